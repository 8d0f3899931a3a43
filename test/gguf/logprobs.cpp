// Per-token log-probabilities and greedy tokens from llama.cpp, for
// test/export-gguf.test.ts: the reference side of our GGUF exports.
//
//   mlw-gguf-logprobs MODEL.gguf text FILE N_GEN   tokenize FILE's text (BOS added as the model says)
//   mlw-gguf-logprobs MODEL.gguf ids  FILE N_GEN   FILE holds token ids, comma separated
//   mlw-gguf-logprobs MODEL.gguf texts FILE 0      FILE holds texts separated by NUL bytes:
//                                                  prints {"tokens": [[...], ...]}, each with BOS
//
// prints one JSON object: {"ids": [...], "logprobs": [...], "greedy": [...]}
// where logprobs[i] = log p(ids[i+1] | ids[0..i]) (log-softmax in double) and
// greedy are the N_GEN argmax tokens that follow the ids (lowest id on ties).
// The KV cache is float32, so that an f32 model is compared without f16 rounding.
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet(ggml_log_level, const char *, void *) {}

static int fail(const std::string & msg) {
    fprintf(stderr, "mlw-gguf-logprobs: %s\n", msg.c_str());
    return 1;
}

static std::string read_file(const char * path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int main(int argc, char ** argv) {
    if (argc != 5) return fail("usage: mlw-gguf-logprobs MODEL.gguf text|ids|texts FILE N_GEN");
    const std::string mode = argv[2];
    const int n_gen = std::stoi(argv[4]);
    llama_log_set(quiet, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return fail(std::string(argv[1]) + ": llama.cpp cannot load this model");
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::vector<llama_token> ids;
    const std::string input = read_file(argv[3]);
    auto tokenize = [&](const std::string & text) {
        const bool add_bos = llama_vocab_get_add_bos(vocab);
        int n = -llama_tokenize(vocab, text.data(), (int32_t) text.size(), nullptr, 0, add_bos, false);
        std::vector<llama_token> out(n);
        if (n > 0) llama_tokenize(vocab, text.data(), (int32_t) text.size(), out.data(), n, add_bos, false);
        return out;
    };
    if (mode == "texts") {
        printf("{\"tokens\":[");
        size_t start = 0;
        for (int k = 0; start <= input.size(); k++) {
            size_t end = input.find('\0', start);
            if (end == std::string::npos) end = input.size();
            const std::vector<llama_token> toks = tokenize(input.substr(start, end - start));
            printf("%s[", k ? "," : "");
            for (size_t i = 0; i < toks.size(); i++) printf("%s%d", i ? "," : "", toks[i]);
            printf("]");
            start = end + 1;
        }
        printf("]}\n");
        llama_model_free(model);
        return 0;
    }
    if (mode == "text") {
        ids = tokenize(input);
    } else if (mode == "ids") {
        std::stringstream ss(input);
        std::string item;
        while (std::getline(ss, item, ',')) ids.push_back(std::stoi(item));
    } else {
        return fail("mode must be text, ids or texts");
    }
    if (ids.size() < 2) return fail("need at least 2 tokens");

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = ids.size() + n_gen;
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    // float32 keys and values: llama.cpp's default f16 cache alone moves log-probs by ~3e-4
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) return fail("cannot create a context");

    const int n = ids.size();
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) return fail("decode failed");

    auto argmax = [&](const float * row) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++) if (row[v] > row[best]) best = v;
        return best;
    };
    std::vector<double> logprobs;
    for (int i = 0; i + 1 < n; i++) {
        const float * row = llama_get_logits_ith(ctx, i);
        double max = row[0];
        for (int v = 1; v < n_vocab; v++) max = std::max(max, (double) row[v]);
        double sum = 0;
        for (int v = 0; v < n_vocab; v++) sum += std::exp((double) row[v] - max);
        logprobs.push_back((double) row[ids[i + 1]] - max - std::log(sum));
    }
    std::vector<int> greedy;
    int next = argmax(llama_get_logits_ith(ctx, n - 1));
    for (int g = 0; g < n_gen; g++) {
        greedy.push_back(next);
        if (g + 1 == n_gen) break;
        llama_token tok = next;
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) return fail("decode failed");
        next = argmax(llama_get_logits_ith(ctx, -1));
    }

    printf("{\"ids\":[");
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("],\"logprobs\":[");
    for (size_t i = 0; i < logprobs.size(); i++) printf("%s%.9g", i ? "," : "", logprobs[i]);
    printf("],\"greedy\":[");
    for (size_t i = 0; i < greedy.size(); i++) printf("%s%d", i ? "," : "", greedy[i]);
    printf("]}\n");

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
