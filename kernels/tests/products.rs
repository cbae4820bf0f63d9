//! The Q4_0, Q4_K and Q8_0 kernels against the scalar reference (bit for bit, on every
//! instruction set this CPU has) and against the weights' meaning (candle's own
//! dequantisation).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use fai_kernels::packed::Format;
use fai_kernels::{
    Activations, Isa, KernelError, Packed, PackedQ4K, PackedQ4_0, PackedQ8_0, Threads,
};

/// A packed matrix's product, whatever its format.
type Product = Box<dyn Fn(Isa, Threads, &Activations, &mut [f32]) -> Result<(), KernelError>>;

/// The product of `rows x cols` weights stored as `dtype` (GGUF bytes).
fn packed(dtype: GgmlDType, bytes: &[u8], rows: usize, cols: usize) -> Product {
    fn boxed<F: Format>(p: Packed<F>) -> Product {
        Box::new(move |isa, threads, x, out| p.matmul_on(isa, threads, x, out))
    }
    match dtype {
        GgmlDType::Q4_0 => boxed(PackedQ4_0::from_gguf(bytes, rows, cols).unwrap()),
        GgmlDType::Q4K => boxed(PackedQ4K::from_gguf(bytes, rows, cols).unwrap()),
        GgmlDType::Q8_0 => boxed(PackedQ8_0::from_gguf(bytes, rows, cols).unwrap()),
        other => panic!("no kernel for {other:?}"),
    }
}

const KINDS: [GgmlDType; 3] = [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q8_0];
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// GGUF bytes of `rows x cols` random weights stored as `dtype` (candle quantises them),
/// and the weights they decode to.
fn weights(
    rng: &mut ChaCha8Rng,
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    scale: f32,
) -> (Vec<u8>, Vec<f32>) {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
        .collect();
    let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, dtype).unwrap();
    let decoded = q
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (q.data().unwrap().to_vec(), decoded)
}

fn activations(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            // Blocks of very different magnitudes (one so small that it quantises to
            // zeros), and some exact zeros.
            let magnitude = [0.01f32, 1.0, 40.0, 1e-38][(i / 32) % 4];
            if i % 97 == 0 {
                0.0
            } else {
                rng.gen_range(-1.0f32..1.0) * magnitude
            }
        })
        .collect()
}

fn product(p: &Product, rows: usize, isa: Isa, threads: Threads, x: &Activations) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.rows() * rows];
    p(isa, threads, x, &mut out).unwrap();
    out
}

#[test]
fn every_instruction_set_computes_the_reference_bits() {
    let isas = Isa::available_all();
    println!("instruction sets on this CPU: {isas:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Rows that leave a partial tile, widths of one block to many, batches that leave
    // every remainder of the kernels' row groups.
    let shapes = [
        (GgmlDType::Q4_0, 16, 32),
        (GgmlDType::Q4_0, 37, 96),
        (GgmlDType::Q4_0, 48, 768),
        (GgmlDType::Q4_0, 5, 2048),
        (GgmlDType::Q4K, 16, 256),
        (GgmlDType::Q4K, 37, 512),
        (GgmlDType::Q4K, 5, 2048),
        (GgmlDType::Q8_0, 16, 32),
        (GgmlDType::Q8_0, 37, 96),
        (GgmlDType::Q8_0, 5, 2048),
    ];
    for (dtype, rows, cols) in shapes {
        let (bytes, _) = weights(&mut rng, dtype, rows, cols, 0.5);
        let p = packed(dtype, &bytes, rows, cols);
        for m in [1, 2, 3, 4, 5, 7, 8, 9, 17] {
            let x = Activations::quantize(&activations(&mut rng, m, cols), m, cols).unwrap();
            let reference = product(&p, rows, Isa::Scalar, Threads::One, &x);
            assert!(reference.iter().all(|v| v.is_finite()));
            for &isa in &isas {
                for threads in [Threads::One, Threads::Pool] {
                    let got = product(&p, rows, isa, threads, &x);
                    let same = got
                        .iter()
                        .zip(&reference)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{dtype:?} {isa:?} {threads:?} differs from the reference for {rows}x{cols}, {m} rows"
                    );
                }
            }
        }
    }
}

#[test]
fn the_product_is_the_weights_times_the_inputs_within_the_activation_rounding() {
    for dtype in KINDS {
        the_product_is_right_for(dtype);
    }
}

fn the_product_is_right_for(dtype: GgmlDType) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (rows, cols, m) = (40, 512, 3);
    let (bytes, w) = weights(&mut rng, dtype, rows, cols, 0.3);
    let p = packed(dtype, &bytes, rows, cols);
    let xs = activations(&mut rng, m, cols);
    let x = Activations::quantize(&xs, m, cols).unwrap();
    let got = product(&p, rows, Isa::best(), Threads::Pool, &x);
    for i in 0..m {
        let row = &xs[i * cols..(i + 1) * cols];
        for j in 0..rows {
            let wr = &w[j * cols..(j + 1) * cols];
            let exact: f64 = wr
                .iter()
                .zip(row)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            // Each input moves by at most half its block's step (block max / 254).
            let bound: f64 = wr
                .chunks(32)
                .zip(row.chunks(32))
                .map(|(wb, xb)| {
                    let step = xb.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    wb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * f64::from(step) / 2.0
                })
                .sum::<f64>()
                * 1.01
                + 1e-4;
            let err = (f64::from(got[i * rows + j]) - exact).abs();
            assert!(
                err <= bound,
                "row {i} col {j}: {} vs {exact} (bound {bound})",
                got[i * rows + j]
            );
        }
    }
}

#[test]
fn wrong_shapes_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (bytes, _) = weights(&mut rng, GgmlDType::Q4_0, 16, 64, 1.0);
    let p = PackedQ4_0::from_gguf(&bytes, 16, 64).unwrap();
    let x = Activations::quantize(&[0.5; 96], 1, 96).unwrap();
    let mut out = vec![0.0; 16];
    assert!(
        p.matmul(&x, &mut out).is_err(),
        "activation width 96 against 64"
    );
    let x = Activations::quantize(&[0.5; 128], 2, 64).unwrap();
    assert!(p.matmul(&x, &mut out).is_err(), "output of 16 for 2 rows");
    let mut out = vec![0.0; 32];
    p.matmul(&x, &mut out).unwrap();
    let (bytes, _) = weights(&mut rng, GgmlDType::Q4K, 16, 256, 1.0);
    let p = PackedQ4K::from_gguf(&bytes, 16, 256).unwrap();
    let x = Activations::quantize(&[0.5; 512], 1, 512).unwrap();
    assert!(
        p.matmul(&x, &mut [0.0; 16]).is_err(),
        "activation width 512 against 256"
    );
}

/// A product into parts (a fused projection's outputs) is the whole product's columns,
/// on every instruction set and both thread modes; parts that would split a tile, or do
/// not add up, are errors.
#[test]
fn a_product_in_parts_is_the_whole_products_columns() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (rows, cols, batch) = (16 + 32 + 7, 64, 5);
    let (bytes, _) = weights(&mut rng, GgmlDType::Q8_0, rows, cols, 1.0);
    let p = PackedQ8_0::from_gguf(&bytes, rows, cols).unwrap();
    let x = Activations::quantize(&activations(&mut rng, batch, cols), batch, cols).unwrap();
    let mut whole = vec![0.0; batch * rows];
    p.matmul(&x, &mut whole).unwrap();
    for isa in Isa::available_all() {
        for threads in [Threads::Pool, Threads::One] {
            let widths = [16, 32, 7];
            let mut parts: Vec<Vec<f32>> =
                widths.iter().map(|w| vec![f32::NAN; batch * w]).collect();
            let mut outs: Vec<&mut [f32]> = parts.iter_mut().map(|v| v.as_mut_slice()).collect();
            p.matmul_parts_on(isa, threads, &x, &mut outs).unwrap();
            let mut start = 0;
            for (part, w) in parts.iter().zip(widths) {
                for r in 0..batch {
                    let want = &whole[r * rows + start..r * rows + start + w];
                    let got = &part[r * w..(r + 1) * w];
                    assert!(
                        want.iter()
                            .zip(got)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} {threads:?} row {r} part at {start}"
                    );
                }
                start += w;
            }
        }
    }
    // A part of 8 columns would put half a tile in each of two parts.
    let mut a = vec![0.0; batch * 8];
    let mut b = vec![0.0; batch * (rows - 8)];
    assert_eq!(
        p.matmul_parts(&x, &mut [a.as_mut_slice(), b.as_mut_slice()]),
        Err(KernelError::PartWidth(8))
    );
    // Parts that hold a row too few, or a part that is not whole rows.
    let mut a = vec![0.0; batch * 16];
    let mut b = vec![0.0; batch * (rows - 17)];
    assert!(p
        .matmul_parts(&x, &mut [a.as_mut_slice(), b.as_mut_slice()])
        .is_err());
    let mut a = vec![0.0; batch * 16 + 1];
    let mut b = vec![0.0; batch * (rows - 16) - 1];
    assert!(p
        .matmul_parts(&x, &mut [a.as_mut_slice(), b.as_mut_slice()])
        .is_err());
}
