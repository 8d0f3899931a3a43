// Every tensor of a GGUF file as float32, dequantized by ggml itself, for
// test/gguf-quant.test.ts: the reference for our Q8_0/Q4_0 block decoders and
// a check that ggml's own GGUF reader accepts the files we write.
//
//   mlw-gguf-dequant FILE.gguf OUTDIR    writes OUTDIR/<tensor name>.f32 (little-endian float32)
#include "ggml.h"
#include "gguf.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mlw-gguf-dequant FILE.gguf OUTDIR\n");
        return 1;
    }
    ggml_context * data = nullptr;
    gguf_init_params params = {false, &data};
    gguf_context * ctx = gguf_init_from_file(argv[1], params);
    if (!ctx) {
        fprintf(stderr, "mlw-gguf-dequant: %s: ggml cannot read this GGUF file\n", argv[1]);
        return 1;
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(ctx); i++) {
        const char * name = gguf_get_tensor_name(ctx, i);
        ggml_tensor * t = ggml_get_tensor(data, name);
        const int64_t n = ggml_nelements(t);
        std::vector<float> out(n);
        if (t->type == GGML_TYPE_F32) {
            memcpy(out.data(), t->data, n * sizeof(float));
        } else {
            const ggml_type_traits * traits = ggml_get_type_traits(t->type);
            if (!traits->to_float) {
                fprintf(stderr, "mlw-gguf-dequant: tensor %s: no dequantizer for type %s\n", name, ggml_type_name(t->type));
                return 1;
            }
            traits->to_float(t->data, out.data(), n);
        }
        const std::string path = std::string(argv[2]) + "/" + name + ".f32";
        FILE * f = fopen(path.c_str(), "wb");
        if (!f || fwrite(out.data(), sizeof(float), n, f) != (size_t) n) {
            fprintf(stderr, "mlw-gguf-dequant: cannot write %s\n", path.c_str());
            return 1;
        }
        fclose(f);
    }
    gguf_free(ctx);
    ggml_free(data);
    return 0;
}
