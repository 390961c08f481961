//! Factory provisioning (feature `std`): what to program, with a debug probe, to install a
//! signed image in a slot as if it had been downloaded and committed, optionally confirmed.
//!
//! The result is sparse: the image proper, then the committed word and its seal, then
//! (confirmed) the selected word and the first confirmation pair, exactly as a download, a
//! trial boot and a confirmation would have left them. Everything between stays erased: flash
//! words must not be programmed with 0xFF filler, or the bootloader could not write them later.

use std::vec;
use std::vec::Vec;

use fut_image::Reject;

use crate::boot::expect;
use crate::layout::{Layout, SlotId};
use crate::trailer::provisioned;

/// A contiguous run of bytes to program at an absolute address.
pub type Segment = (u32, Vec<u8>);

/// Segments that install `image` (a signed image for `slot`) committed, and confirmed if
/// `confirmed`. The image is checked against the slot first (header, size, load address).
pub fn segments(layout: &Layout, slot: SlotId, image: &[u8], confirmed: bool) -> Result<Vec<Segment>, Reject> {
    let e = expect(layout, slot, 0);
    fut_image::check_header(&mut &image[..], &e)?;
    if image.len() as u64 > e.capacity as u64 {
        return Err(Reject::Oversize { needed: image.len() as u64, capacity: e.capacity });
    }
    let base = layout.slot_address(slot);
    let mut body = image.to_vec();
    body.resize(body.len().next_multiple_of(layout.word as usize), 0xFF);
    let mut out = vec![(base, body)];
    for f in provisioned(confirmed) {
        out.push((layout.flash_base + f.offset(layout, slot), f.pattern().to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::H723;
    use crate::trailer::Flag;

    #[test]
    fn provisioning_is_sparse_and_checked() {
        let mut h = fut_image::Header {
            magic: fut_image::IMAGE_MAGIC,
            load_addr: 0x0808_0000,
            hdr_size: 0x400,
            protect_tlv_size: 0,
            img_size: 100,
            flags: fut_image::IMAGE_F_ROM_FIXED,
            version: fut_image::ImageVersion::default(),
        };
        let mut img = h.encode().to_vec();
        img.resize(0x400 + 100, 0);
        let s = segments(&H723, SlotId::B, &img, true).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].0, 0x0808_0000);
        assert_eq!(s[0].1.len() % 32, 0);
        assert_eq!(s[1], (0x080D_FE00, Flag::Committed.pattern().to_vec()));
        assert_eq!(s[2], (0x080D_FE20, Flag::CommitSeal.pattern().to_vec()));
        assert_eq!(s[4], (0x080D_FE80, Flag::Confirmed(0).pattern().to_vec()));
        assert_eq!(s[5], (0x080D_FEA0, Flag::ConfirmSeal(0).pattern().to_vec()));
        assert_eq!(segments(&H723, SlotId::B, &img, false).unwrap().len(), 3);
        assert_eq!(
            segments(&H723, SlotId::A, &img, true),
            Err(Reject::WrongLoadAddress { expected: 0x0802_0000, found: 0x0808_0000 })
        );
        h.magic = 0;
        img[..32].copy_from_slice(&h.encode());
        assert!(matches!(segments(&H723, SlotId::B, &img, true), Err(Reject::BadMagic { .. })));
    }
}
