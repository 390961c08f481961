//! Floors from the standards, independent of the twin's bus model: what the wire cannot beat.

/// Minimum bits of a CAN FD frame with an 11-bit ID, `n` data bytes and BRS, no dynamic stuff
/// bits (ISO 11898-1:2015 §10.4): (nominal-rate bits, data-rate bits). Dynamic stuff bits
/// depend on the data and are left out, so this is a lower bound.
pub fn fd_frame_bits(n: usize) -> (u32, u32) {
    // SOF, 11-bit ID, RRS, IDE, FDF, res, BRS (switch at its sample point) | ESI, DLC, data,
    // stuff count (4), CRC-21 (or 17 up to 16 bytes) with its fixed stuff bits (one per 4) |
    // CRC delimiter, ACK, ACK delimiter, EOF (7), intermission (3).
    let crc: u32 = if n > 16 { 21 } else { 17 };
    let fixed_stuff = (4 + crc).div_ceil(4);
    let nominal = 1 + 11 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 7 + 3;
    let data = 1 + 4 + 8 * n as u32 + 4 + crc + fixed_stuff;
    (nominal, data)
}

/// Seconds on the wire for a frame of `n` data bytes at `nominal` / `data` bit/s.
#[allow(dead_code)]
pub fn fd_frame_secs(n: usize, nominal: u32, data: u32) -> f64 {
    let (a, b) = fd_frame_bits(n);
    a as f64 / nominal as f64 + b as f64 / data as f64
}

/// Exact bits of a CAN FD frame with BRS, an 11-bit `id` and these `data` bytes (a CAN FD
/// length), per ISO 11898-1:2015 §10.4–10.5, written here from the standard and not shared
/// with the twin's bus model: (nominal-rate bits, data-rate bits).
///
/// Dynamic stuffing runs from SOF to the end of the data field (a complement after five equal
/// bits, the stuff bit counting towards the next run); stuff bits up to BRS are sent at the
/// nominal rate, the rest at the data rate. The CRC field has fixed stuff bits instead: one
/// before the stuff count and one after every four bits.
#[allow(dead_code)]
pub fn fd_frame_bits_exact(id: u16, data: &[u8]) -> (u32, u32) {
    let dlc: u32 = match data.len() {
        0..=8 => data.len() as u32,
        12 => 9,
        16 => 10,
        20 => 11,
        24 => 12,
        32 => 13,
        48 => 14,
        64 => 15,
        n => panic!("{n} bytes is not a CAN FD frame length"),
    };
    let mut bits: Vec<bool> = vec![false]; // SOF
    bits.extend((0..11).rev().map(|i| id >> i & 1 == 1));
    bits.extend([false, false, true, false, true]); // RRS, IDE, FDF, res, BRS
    let brs_at = bits.len();
    bits.push(false); // ESI
    bits.extend((0..4).rev().map(|i| dlc >> i & 1 == 1));
    bits.extend(data.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)));
    let stuff_nominal = stuff_bits(&bits[..brs_at]);
    let stuff_data = stuff_bits(&bits) - stuff_nominal;
    let crc: u32 = if data.len() > 16 { 21 } else { 17 };
    let fixed = (4 + crc).div_ceil(4);
    // Nominal: SOF..BRS and its stuff bits; ACK, ACK delimiter, EOF (7), intermission (3).
    let nominal = brs_at as u32 + stuff_nominal + 12;
    // Data: ESI, DLC, data and their stuff bits; stuff count, CRC, fixed stuff, CRC delimiter.
    let data_bits = (bits.len() - brs_at) as u32 + stuff_data + 4 + crc + fixed + 1;
    (nominal, data_bits)
}

/// Dynamic stuff bits in `bits` (ISO 11898-1 §10.5: a complement after five equal bits, the
/// stuff bit starting the next run). A prefix's count is the count of its own bits: stuffing
/// depends only on what came before.
fn stuff_bits(bits: &[bool]) -> u32 {
    let (mut run, mut last, mut stuff) = (0u32, None, 0u32);
    for b in bits {
        if last == Some(*b) {
            run += 1;
        } else {
            run = 1;
            last = Some(*b);
        }
        if run == 5 {
            stuff += 1;
            last = Some(!*b);
            run = 1;
        }
    }
    stuff
}

/// Seconds on the wire for these frames (id, bytes) at `nominal` / `data` bit/s.
#[allow(dead_code)]
pub fn fd_frames_secs<'a>(frames: impl IntoIterator<Item = (u16, &'a [u8])>, nominal: u32, data: u32) -> f64 {
    frames
        .into_iter()
        .map(|(id, d)| {
            let (a, b) = fd_frame_bits_exact(id, d);
            a as f64 / nominal as f64 + b as f64 / data as f64
        })
        .sum()
}

/// Sector erase and word program times from the datasheet (DS13313 / DS12110, "Flash memory
/// programming" characteristics, program/erase parallelism x32 as embassy-stm32 sets it with
/// PSIZE = 2): typical values. The maxima are twice these.
#[allow(dead_code)]
pub mod datasheet {
    /// 128 KiB sector erase, x32, typical (s).
    pub const SECTOR_ERASE_S: f64 = 1.1;
    /// 256-bit (32-byte) flash word program, x32, typical (s).
    pub const WORD_PROGRAM_S: f64 = 130e-6;
}

/// Exact bits of a classic CAN base frame (11-bit `id`, 0..=8 `data` bytes), per ISO
/// 11898-1:2015 §10.4: SOF, ID, RTR, IDE, r0, DLC, data and the CRC-15 sequence are stuffed
/// (a complement after five equal bits); CRC delimiter, ACK slot and delimiter, EOF (7) and the
/// intermission (3) are not. Written from the standard, not shared with the twin's bus model.
#[allow(dead_code)]
pub fn classic_frame_bits_exact(id: u16, data: &[u8]) -> u32 {
    assert!(data.len() <= 8, "{} bytes is not a classic CAN frame", data.len());
    let mut bits: Vec<bool> = vec![false]; // SOF
    bits.extend((0..11).rev().map(|i| id >> i & 1 == 1));
    bits.extend([false, false, false]); // RTR (data frame), IDE (base), r0
    bits.extend((0..4).rev().map(|i| data.len() >> i & 1 == 1));
    bits.extend(data.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)));
    // CRC-15, generator x^15 + x^14 + x^10 + x^8 + x^7 + x^4 + x^3 + 1 (0x4599), over SOF..data.
    let mut crc: u16 = 0;
    for b in &bits {
        let top = (crc >> 14) & 1 == 1;
        crc = (crc << 1) & 0x7FFF;
        if top != *b {
            crc ^= 0x4599;
        }
    }
    bits.extend((0..15).rev().map(|i| crc >> i & 1 == 1));
    let stuff = stuff_bits(&bits);
    bits.len() as u32 + stuff + 1 + 2 + 7 + 3
}

/// Seconds on the wire for these classic frames at `rate` bit/s.
#[allow(dead_code)]
pub fn classic_frames_secs<'a>(frames: impl IntoIterator<Item = (u16, &'a [u8])>, rate: u32) -> f64 {
    frames.into_iter().map(|(id, d)| classic_frame_bits_exact(id, d) as f64 / rate as f64).sum()
}

/// The STM32F4 datasheets' "Flash memory programming" characteristics at x8 parallelism, the
/// one the ROM bootloader writes with ("Flash write operation by byte", AN2606 Table 93):
/// typical values (DS10693 for the F446; the same table as DS8626 Table 42 for the F405/407;
/// DS10693 was not available to check here). Erasing runs at the same parallelism (PSIZE).
#[allow(dead_code)]
pub mod datasheet_f4_x8 {
    /// One byte programmed (the table's "word programming time", x8), typical (s).
    pub const PROGRAM_S: f64 = 16e-6;
    /// 16 KiB sector erase, x8, typical (s).
    pub const ERASE_16K_S: f64 = 0.4;
    /// 64 KiB sector erase, x8, typical (s).
    pub const ERASE_64K_S: f64 = 1.2;
    /// 128 KiB sector erase, x8, typical (s).
    pub const ERASE_128K_S: f64 = 2.0;
}
