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
