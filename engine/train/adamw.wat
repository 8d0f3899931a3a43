;; AdamW and the squared norm of gradients, four float32 lanes at a time
;; (WebAssembly SIMD). The source of adamw.wasm (test/train-adamw-kernel.test.ts
;; checks that the committed binary is this text assembled). Used by
;; engine/train/adamw-kernel.ts, which copies chunks of each tensor into this
;; module's memory, calls these functions and copies the results back.
;;
;; Math, per element, in float32 as torch.optim.AdamW computes it (lerp for
;; the first moment, addcmul for the second, decoupled weight decay):
;;   g  = g * gscale                         (global-norm clipping)
;;   m  = m + c1 * (g - m)                   (c1 = 1 - beta1)
;;   v  = v * beta2 + c2 * g * g             (c2 = 1 - beta2)
;;   p  = p * keep - stepSize * (m / (sqrt(v) / bc2Sqrt + eps))
;;                                           (keep = 1 - lr * weight_decay)
;; Lanes are independent: a chunk whose length is not a multiple of 4 is
;; computed up to the next multiple and the extra lanes are not read back.
(module
  (memory (export "memory") 1)

  ;; Sum of g[i]^2 over n floats at byte offset g (float64 accumulators; n a
  ;; multiple of 4, the caller pads with zeros).
  (func (export "sumsq") (param $g i32) (param $n i32) (result f64)
    (local $end i32) (local $x v128) (local $acc v128)
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $acc (f64x2.splat (f64.const 0)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
        (local.set $x (v128.load (local.get $g)))
        (local.set $x (f32x4.mul (local.get $x) (local.get $x)))
        (local.set $acc (f64x2.add (local.get $acc) (f64x2.promote_low_f32x4 (local.get $x))))
        (local.set $acc (f64x2.add (local.get $acc)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (br $next)))
    (f64.add (f64x2.extract_lane 0 (local.get $acc)) (f64x2.extract_lane 1 (local.get $acc))))

  ;; One AdamW step over n floats of p, g, m, v (byte offsets), in place on p, m, v.
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $gscale f32) (param $c1 f32) (param $beta2 f32) (param $c2 f32)
    (param $bc2Sqrt f32) (param $eps f32) (param $keep f32) (param $stepSize f32)
    (local $i i32) (local $end i32)
    (local $gi v128) (local $mi v128) (local $vi v128)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        ;; g = g * gscale
        (local.set $gi (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (f32x4.splat (local.get $gscale))))
        ;; m = m + c1 * (g - m)
        (local.set $mi (v128.load (i32.add (local.get $m) (local.get $i))))
        (local.set $mi (f32x4.add (local.get $mi)
          (f32x4.mul (f32x4.splat (local.get $c1)) (f32x4.sub (local.get $gi) (local.get $mi)))))
        (v128.store (i32.add (local.get $m) (local.get $i)) (local.get $mi))
        ;; v = v * beta2 + c2 * g * g
        (local.set $vi (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $i))) (f32x4.splat (local.get $beta2)))
          (f32x4.mul (f32x4.mul (f32x4.splat (local.get $c2)) (local.get $gi)) (local.get $gi))))
        (v128.store (i32.add (local.get $v) (local.get $i)) (local.get $vi))
        ;; p = p * keep - stepSize * (m / (sqrt(v) / bc2Sqrt + eps))
        (v128.store (i32.add (local.get $p) (local.get $i))
          (f32x4.sub
            (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $i))) (f32x4.splat (local.get $keep)))
            (f32x4.mul (f32x4.splat (local.get $stepSize))
              (f32x4.div (local.get $mi)
                (f32x4.add
                  (f32x4.div (f32x4.sqrt (local.get $vi)) (f32x4.splat (local.get $bc2Sqrt)))
                  (f32x4.splat (local.get $eps)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))))
