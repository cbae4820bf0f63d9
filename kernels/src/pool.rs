//! Independent pieces of work spread over candle's CPU worker pool (the pool the matrix
//! products use, so nothing else competes for the cores).

use std::sync::Mutex;

/// Runs `f` once on each of `parts`, the parts spread over candle's worker pool (or here,
/// when called from one of its workers). Each part sits behind a lock that only its one
/// taker ever holds, so parts may be `&mut` pieces of one buffer.
pub fn each_part<T: Send>(parts: Vec<T>, f: impl Fn(&mut T) + Sync) {
    let parts: Vec<Mutex<T>> = parts.into_iter().map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(parts.len(), |range| {
        for part in parts.get(range).unwrap_or(&[]) {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut part);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_part_is_run_once() {
        let mut data = vec![0u32; 1000];
        let parts: Vec<&mut [u32]> = data.chunks_mut(7).collect();
        super::each_part(parts, |p| p.iter_mut().for_each(|v| *v += 1));
        assert!(data.iter().all(|v| *v == 1));
    }
}
