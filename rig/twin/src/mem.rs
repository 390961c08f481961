//! Sparse RAM: retained across system resets, undefined after power-on.
//!
//! Pages are allocated on first write. A byte never written since power-on reads as a
//! pseudo-random value derived from the address and the power-cycle count, like SRAM powering
//! up, so a marker written before a power cycle is (with overwhelming probability) gone after.
//! Clearing is O(pages written), which keeps power cycles cheap. Lookups go through a two-level
//! page table, so the emulated core's loads and stores cost two indexings.

const PAGE: u32 = 4096;
const PAGES_PER_TABLE: usize = 1024; // 4 MiB per second-level table

type Page = Box<[u8; PAGE as usize]>;

/// Sparse memory: a two-level page table (fast enough for the emulated core's every access).
#[derive(Default, Clone)]
pub struct SparseMem {
    tables: Vec<Option<Box<[Option<Page>]>>>,
    pages: usize,
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
        self.tables.clear();
        self.pages = 0;
        self.seed = power_cycle.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(1);
    }

    fn page(&self, a: u32) -> Option<&Page> {
        let n = (a / PAGE) as usize;
        self.tables.get(n / PAGES_PER_TABLE)?.as_ref()?[n % PAGES_PER_TABLE].as_ref()
    }

    fn page_mut(&mut self, a: u32) -> &mut Page {
        let n = (a / PAGE) as usize;
        let (t, i) = (n / PAGES_PER_TABLE, n % PAGES_PER_TABLE);
        if self.tables.len() <= t {
            self.tables.resize_with(t + 1, || None);
        }
        let table = self.tables[t].get_or_insert_with(|| vec![None; PAGES_PER_TABLE].into_boxed_slice());
        if table[i].is_none() {
            let base = (n as u32) * PAGE;
            let mut p = Box::new([0u8; PAGE as usize]);
            for (j, v) in p.iter_mut().enumerate() {
                *v = garbage(self.seed, base + j as u32);
            }
            table[i] = Some(p);
            self.pages += 1;
        }
        table[i].as_mut().expect("allocated")
    }

    /// Read bytes.
    pub fn read(&self, addr: u32, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u32);
            *b = match self.page(a) {
                Some(p) => p[(a % PAGE) as usize],
                None => garbage(self.seed, a),
            };
        }
    }

    /// Write bytes.
    pub fn write(&mut self, addr: u32, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = addr.wrapping_add(i as u32);
            self.page_mut(a)[(a % PAGE) as usize] = *b;
        }
    }

    /// Read an aligned little-endian value of `bytes` (1, 2 or 4) bytes.
    pub fn read_le(&self, addr: u32, bytes: u32) -> u32 {
        match self.page(addr) {
            Some(p) if (addr % PAGE) + bytes <= PAGE => {
                let o = (addr % PAGE) as usize;
                let mut v = 0u32;
                for i in 0..bytes as usize {
                    v |= (p[o + i] as u32) << (8 * i);
                }
                v
            }
            _ => {
                let mut b = [0u8; 4];
                self.read(addr, &mut b[..bytes as usize]);
                u32::from_le_bytes(b)
            }
        }
    }

    /// Write the low `bytes` (1, 2 or 4) bytes of `value`, little-endian.
    pub fn write_le(&mut self, addr: u32, bytes: u32, value: u32) {
        if (addr % PAGE) + bytes <= PAGE {
            let o = (addr % PAGE) as usize;
            let p = self.page_mut(addr);
            for i in 0..bytes as usize {
                p[o + i] = (value >> (8 * i)) as u8;
            }
        } else {
            self.write(addr, &value.to_le_bytes()[..bytes as usize]);
        }
    }

    /// Pages allocated since the last power loss.
    pub fn pages(&self) -> usize {
        self.pages
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
