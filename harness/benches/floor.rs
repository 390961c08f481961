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
    let (mut run, mut last, mut stuff_nominal, mut stuff_data) = (0u32, None, 0u32, 0u32);
    for (i, b) in bits.iter().enumerate() {
        if last == Some(*b) {
            run += 1;
        } else {
            run = 1;
            last = Some(*b);
        }
        if run == 5 {
            if i < brs_at {
                stuff_nominal += 1;
            } else {
                stuff_data += 1;
            }
            last = Some(!*b);
            run = 1;
        }
    }
    let crc: u32 = if data.len() > 16 { 21 } else { 17 };
    let fixed = (4 + crc).div_ceil(4);
    // Nominal: SOF..BRS and its stuff bits; ACK, ACK delimiter, EOF (7), intermission (3).
    let nominal = brs_at as u32 + stuff_nominal + 12;
    // Data: ESI, DLC, data and their stuff bits; stuff count, CRC, fixed stuff, CRC delimiter.
    let data_bits = (bits.len() - brs_at) as u32 + stuff_data + 4 + crc + fixed + 1;
    (nominal, data_bits)
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
