//! Sparse RAM: retained across system resets, undefined after power-on.
//!
//! Pages are allocated on first write. A byte never written since power-on reads as a
//! pseudo-random value derived from the address and the power-cycle count, like SRAM powering
//! up, so a marker written before a power cycle is (with overwhelming probability) gone after.
//! Clearing is O(pages written), which keeps power cycles cheap.

use std::collections::HashMap;

const PAGE: u32 = 4096;

/// Sparse memory.
#[derive(Default, Clone)]
pub struct SparseMem {
    pages: HashMap<u32, Box<[u8; PAGE as usize]>>,
    seed: u64,
}

fn garbage(seed: u64, addr: u32) -> u8 {
    // SplitMix64 finaliser over (seed, addr).
    let mut z = seed ^ (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u8
}

impl SparseMem {
    /// Power loss: forget everything; new undefined contents.
    pub fn power_loss(&mut self, power_cycle: u64) {
        self.pages.clear();
        self.seed = power_cycle.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(1);
    }

    /// Read bytes.
    pub fn read(&self, addr: u32, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u32);
            *b = match self.pages.get(&(a / PAGE)) {
                Some(p) => p[(a % PAGE) as usize],
                None => garbage(self.seed, a),
            };
        }
    }

    /// Write bytes.
    pub fn write(&mut self, addr: u32, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = addr.wrapping_add(i as u32);
            let seed = self.seed;
            let page = self.pages.entry(a / PAGE).or_insert_with(|| {
                let mut p = Box::new([0u8; PAGE as usize]);
                for (j, v) in p.iter_mut().enumerate() {
                    *v = garbage(seed, (a / PAGE) * PAGE + j as u32);
                }
                p
            });
            page[(a % PAGE) as usize] = *b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_until_power_loss() {
        let mut m = SparseMem::default();
        m.power_loss(1);
        let mut before = [0u8; 8];
        m.read(0x2400_0000, &mut before);
        m.write(0x2400_0000, b"MARKER!!");
        let mut b = [0u8; 8];
        m.read(0x2400_0000, &mut b);
        assert_eq!(&b, b"MARKER!!");
        m.power_loss(2);
        m.read(0x2400_0000, &mut b);
        assert_ne!(&b, b"MARKER!!");
        assert_ne!(b, before, "power-on contents differ between power cycles");
    }
}
