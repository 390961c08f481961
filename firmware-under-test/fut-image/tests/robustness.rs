//! The verifier on hostile input, on stable Rust (the cargo-fuzz target in `fuzz/` explores
//! further on nightly): structure-aware mutations of many valid images, each expected to give one
//! specific named [`Reject`] reason.
//!
//! Images: payloads of 1, 31, 32, 700, 4096 and 65536 bytes, each with KEYHASH and with PUBKEY,
//! each plain (as `imgtool`/`sign` make them) and with extra unknown TLVs in both areas; plus
//! images without a protected area (which verify to `NoSecurityCounter`). For every image, every
//! mutation class below is applied and the verdict is compared with the one the structure
//! predicts: header fields, TLV info headers, TLV lengths and types, the protected area's size
//! lies, truncation at every structural boundary, byte flips in the hashed region, the hash, the
//! key and the signature, appended TLVs, read errors, and changes that cannot change the verdict
//! (bytes after the image, unprotected unknown TLVs), which must give identical `Verified`s.
//! Every accepted mutant is also checked against `inspect` and an independent hash/signature check.

mod support;

use std::collections::BTreeMap;
use std::fmt;

use fut_image::sign::{SignError, SignOptions, sign};
use fut_image::{
    Expect, Header, IMAGE_F_ROM_FIXED, IMAGE_MAGIC, ImageVersion, ReadFault, Reject, Source, TLV_INFO_MAGIC,
    TLV_PROT_INFO_MAGIC, TrustedKey, Verified, tlv, verify,
};
use support::*;

/// An unknown TLV type (protected extra).
const UNKNOWN_PROT: u16 = 0x7F01;
/// An unknown TLV type (unprotected extra).
const UNKNOWN: u16 = 0x00A0;
const SEC: u32 = 7;

/// What a mutant must give.
#[derive(Debug, Clone)]
enum Want {
    /// Exactly this rejection.
    Reject(Reject),
    /// `BadTlvArea` at this offset, its reason containing this text.
    Tlv(usize, &'static str),
    /// The unmutated image's verdict, `Verified` fields identical.
    Base,
    /// The unmutated image's verdict with this `total_len` (an unprotected TLV added or dropped).
    BaseWithLen(usize),
}

#[derive(Default)]
struct Counts {
    rejected: u32,
    accepted: u32,
    skipped: u32,
}

struct Run {
    key: TrustedKey,
    classes: BTreeMap<&'static str, Counts>,
    images: u32,
}

struct Case<'a> {
    img: &'a Image,
    base: &'a Result<Verified, Reject>,
}

/// A read fault (flash ECC error) at one byte.
struct Ecc<'a> {
    bytes: &'a [u8],
    bad: usize,
}

impl Source for Ecc<'_> {
    fn len(&self) -> u32 {
        self.bytes.len() as u32
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ReadFault> {
        let start = offset as usize;
        if start <= self.bad && self.bad < start + buf.len() {
            return Err(ReadFault::Unreadable);
        }
        let mut s = self.bytes;
        s.read(offset, buf)
    }
}

impl Run {
    fn new() -> Run {
        Run { key: key("test-ed25519-a.pem").trusted(), classes: BTreeMap::new(), images: 0 }
    }

    /// Check one mutant `m` of `c.img` against `want` (`None`: the structure does not predict
    /// one reason, e.g. a size lie that lands on bytes that happen to look like a TLV info).
    fn check(
        &mut self,
        class: &'static str,
        c: &Case<'_>,
        what: impl fmt::Display,
        m: &[u8],
        e: &Expect,
        want: Option<Want>,
    ) {
        let r = verify(&mut &m[..], e, &[self.key], &mut fut_image::Ed25519Verify);
        self.judge(class, c, what, m, r, want);
    }

    fn judge(
        &mut self,
        class: &'static str,
        c: &Case<'_>,
        what: impl fmt::Display,
        m: &[u8],
        r: Result<Verified, Reject>,
        want: Option<Want>,
    ) {
        // Whatever the verdict, inspect must not panic on it.
        let _ = fut_image::inspect::inspect(m).map(|r| r.to_string());
        let n = self.classes.entry(class).or_default();
        if let Ok(v) = &r {
            assert_consistent(m, v, &self.key);
            n.accepted += 1;
        } else {
            n.rejected += 1;
        }
        let Some(want) = want else {
            n.skipped += 1;
            return;
        };
        let ok = match (&want, &r) {
            (Want::Reject(w), Err(g)) => w == g,
            (Want::Tlv(offset, why), Err(Reject::BadTlvArea { why: g, offset: o })) => {
                *o as usize == *offset && g.contains(why)
            }
            (Want::Base, r) => r == c.base,
            (Want::BaseWithLen(len), r) => match (c.base, r) {
                (Ok(b), Ok(v)) => *v == Verified { total_len: *len as u32, ..*b },
                (Err(b), Err(g)) => b == g,
                _ => false,
            },
            _ => false,
        };
        assert!(ok, "image {}, {class}: {what}: got {r:?}, want {want:?}", c.img.name);
    }

    fn summary(&self) -> String {
        let total: u32 = self.classes.values().map(|n| n.rejected + n.accepted).sum();
        let per: Vec<String> = self
            .classes
            .iter()
            .map(|(k, n)| {
                let skipped = if n.skipped > 0 { format!(", {} unpredicted", n.skipped) } else { String::new() };
                format!("{k} {}/{}{skipped}", n.rejected, n.accepted)
            })
            .collect();
        format!("robustness: {} images, {total} mutations (class rejected/accepted): {}", self.images, per.join("; "))
    }
}

fn payload(n: usize) -> Vec<u8> {
    // Pseudo-random, without 0x69: no payload byte pair can look like a TLV info magic, so a size
    // lie that lands in the payload always gives the bad-magic reason.
    let mut x: u32 = 0x9E37_79B9 ^ n as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = (x >> 8) as u8;
            if b == 0x69 { 0x6A } else { b }
        })
        .collect()
}

fn images() -> Vec<Image> {
    let k = key("test-ed25519-a.pem");
    let mut out = Vec::new();
    for n in [1usize, 31, 32, 700, 4096, 65536] {
        for key_tlv in [KeyTlv::KeyHash, KeyTlv::PubKey] {
            for extras in [false, true] {
                let mut s = Spec::new(payload(n), SEC);
                s.key_tlv = key_tlv;
                if extras {
                    s.protected.push((UNKNOWN_PROT, vec![0xA5; 6]));
                    s.trailing.push((UNKNOWN, b"BOOT".to_vec()));
                }
                let name = format!("{n} B, {key_tlv:?}{}", if extras { ", extra TLVs" } else { "" });
                out.push(s.build(&k, name));
            }
        }
    }
    for n in [1usize, 700, 65536] {
        let mut s = Spec::new(payload(n), SEC);
        s.protected.clear();
        out.push(s.build(&k, format!("{n} B, no protected TLVs")));
    }
    out
}

fn with(img: &Image, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut m = img.bytes.clone();
    f(&mut m);
    m
}

fn set_header(m: &mut [u8], f: impl FnOnce(&mut Header)) {
    let mut h = Header::decode(m[..32].try_into().unwrap());
    f(&mut h);
    m[..32].copy_from_slice(&h.encode());
}

/// What a header whose size fields were changed gives (magic, flags, load address and alignment
/// already pass).
fn after_sizes(img: &Image, m: &[u8], e: &Expect) -> Option<Want> {
    let h = Header::decode(m[..32].try_into().unwrap());
    let needed = h.hashed_len() + 4;
    if needed > e.capacity as u64 {
        return Some(Want::Reject(Reject::Oversize { needed, capacity: e.capacity }));
    }
    if needed > m.len() as u64 {
        return Some(Want::Reject(Reject::Truncated { needed, have: m.len() as u32 }));
    }
    let pe = h.payload_end() as usize;
    let found = get_u16(m, pe);
    if h.protect_tlv_size != 0 {
        if found != TLV_PROT_INFO_MAGIC {
            return Some(Want::Tlv(pe, "protected TLV info magic"));
        }
        if pe == img.payload_end && (img.hashed_len - img.payload_end) as u16 != h.protect_tlv_size {
            return Some(Want::Tlv(pe, "differs from the header's protect_tlv_size"));
        }
        None
    } else {
        if found != TLV_INFO_MAGIC {
            return Some(Want::Tlv(pe, "TLV info magic is not 0x6907"));
        }
        // The real unprotected area, reached with a changed header: the hash says so.
        (pe == img.hashed_len).then_some(Want::Reject(Reject::HashMismatch))
    }
}

fn header_mutations(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    let cls = "header: magic";
    for v in [0, u32::MAX, IMAGE_MAGIC ^ 1, IMAGE_MAGIC ^ 0x8000_0000, IMAGE_MAGIC.swap_bytes()] {
        let m = with(img, |m| put_u32(m, 0, v));
        run.check(cls, c, format_args!("{v:#x}"), &m, &e, Some(Want::Reject(Reject::BadMagic { found: v })));
    }
    let cls = "header: load_addr";
    for v in [0, A + 4, A ^ 0x8000_0000, B, u32::MAX] {
        let m = with(img, |m| put_u32(m, 4, v));
        let want = Reject::WrongLoadAddress { expected: A, found: v };
        run.check(cls, c, format_args!("{v:#x}"), &m, &e, Some(Want::Reject(want)));
    }
    let cls = "header: hdr_size";
    for v in [0u16, 1, 31, 32, 33, 0x200, 0x3FF, 0x401, 0x7FF, 0x800, 0xC00, 0xFC00] {
        let m = with(img, |m| put_u16(m, 8, v));
        let want = if v < 32 {
            Some(Want::Reject(Reject::BadHeader { why: "header size is smaller than the 32-byte header" }))
        } else if v % 0x400 != 0 {
            Some(Want::Reject(Reject::MisalignedHeader { hdr_size: v, align: 0x400 }))
        } else {
            after_sizes(img, &m, &e)
        };
        run.check(cls, c, format_args!("{v:#x}"), &m, &e, want);
    }
    let cls = "header: protect_tlv_size";
    let real = (img.hashed_len - img.payload_end) as u16;
    for v in [0u16, 1, 2, 3, 4, 5, 8, 12, 16, 22, 30, 0xFF, 0xFFFF] {
        if v == real {
            continue;
        }
        let m = with(img, |m| put_u16(m, 10, v));
        let want = match v {
            1..=3 => {
                Some(Want::Reject(Reject::BadHeader { why: "protected TLV size is smaller than its info header" }))
            }
            _ => after_sizes(img, &m, &e),
        };
        run.check(cls, c, format_args!("{v}"), &m, &e, want);
    }
    let cls = "header: img_size";
    let p = (img.payload_end - img.hdr_size) as u32;
    let fixed = (img.hdr_size + (img.hashed_len - img.payload_end) + 4) as u32;
    for v in
        [0, 1, p - 1, p + 1, p.saturating_sub(4), p + 4, p + 12, e.capacity - fixed, e.capacity - fixed + 1, u32::MAX]
    {
        if v == p {
            continue;
        }
        let m = with(img, |m| put_u32(m, 12, v));
        let want = if v == 0 {
            Some(Want::Reject(Reject::BadHeader { why: "image size is zero" }))
        } else {
            after_sizes(img, &m, &e)
        };
        run.check(cls, c, format_args!("{v}"), &m, &e, want);
    }
    let cls = "header: size lies that keep the layout";
    if p > 0x400 {
        // The header grows into the payload: the areas are still found, the hash catches it.
        let m = with(img, |m| set_header(m, |h| (h.hdr_size, h.img_size) = (h.hdr_size + 0x400, h.img_size - 0x400)));
        run.check(cls, c, "hdr_size + 0x400, img_size - 0x400", &m, &e, Some(Want::Reject(Reject::HashMismatch)));
    }
    if img.has_protected() {
        // The protected area declared part of the payload (no protected area).
        let m = with(img, |m| set_header(m, |h| (h.img_size, h.protect_tlv_size) = (h.img_size + real as u32, 0)));
        run.check(cls, c, "protected area folded into img_size", &m, &e, Some(Want::Reject(Reject::HashMismatch)));
    }
    let cls = "header: flags";
    let m = with(img, |m| put_u32(m, 16, 0));
    run.check(cls, c, "0", &m, &e, Some(Want::Reject(Reject::NoLoadAddress)));
    for bit in (0..32).filter(|b| 1 << b != IMAGE_F_ROM_FIXED) {
        let flags = IMAGE_F_ROM_FIXED | 1 << bit;
        let m = with(img, |m| put_u32(m, 16, flags));
        run.check(cls, c, format_args!("{flags:#x}"), &m, &e, Some(Want::Reject(Reject::UnsupportedFlags { flags })));
    }
    let cls = "header: version and pad (hashed)";
    for at in 20..32 {
        let m = with(img, |m| m[at] ^= 0x01);
        run.check(cls, c, format_args!("byte {at}"), &m, &e, Some(Want::Reject(Reject::HashMismatch)));
    }
}

fn info_mutations(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    for protected in [true, false] {
        if protected && !img.has_protected() {
            continue;
        }
        let at = img.info(protected);
        let (magic, other, why) = if protected {
            (TLV_PROT_INFO_MAGIC, TLV_INFO_MAGIC, "protected TLV info magic")
        } else {
            (TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC, "TLV info magic is not 0x6907")
        };
        let cls = if protected { "TLV info: protected magic" } else { "TLV info: magic" };
        for v in [magic ^ 1, other, 0, 0xFFFF] {
            let m = with(img, |m| put_u16(m, at, v));
            run.check(cls, c, format_args!("{v:#x}"), &m, &e, Some(Want::Tlv(at, why)));
        }
        let real = img.area_end(protected) - at;
        let mut totals: Vec<usize> = vec![0, 1, 2, 3, 4, real - 1, real + 1, real + 4, 0xFFFF];
        if !protected {
            for t in img.area(false) {
                totals.extend([t.offset, t.offset + 1, t.offset + 3, t.value(), t.end() - 1].map(|o| o - at));
            }
        }
        totals.sort();
        totals.dedup();
        let cls = if protected {
            "TLV info: protected total (lies against protect_tlv_size)"
        } else {
            "TLV info: total (too small, entry boundaries, off by one, past the end)"
        };
        for tot in totals.into_iter().filter(|t| *t != real && *t <= 0xFFFF) {
            let m = with(img, |m| put_u16(m, at + 2, tot as u16));
            let end = at + tot;
            let want = if tot < 4 {
                Want::Tlv(at, "smaller than its info header")
            } else if protected {
                Want::Tlv(at, "differs from the header's protect_tlv_size")
            } else if end as u64 > e.capacity as u64 {
                Want::Reject(Reject::Oversize { needed: end as u64, capacity: e.capacity })
            } else if end > img.len() {
                Want::Reject(Reject::TlvAreaTruncated { offset: at as u32, end: end as u64, have: img.len() as u32 })
            } else {
                area_cut_at(img, end)
            };
            run.check(cls, c, format_args!("{tot}"), &m, &e, Some(want));
        }
    }
}

/// The unprotected area declared to end at `end` (inside the real one).
fn area_cut_at(img: &Image, end: usize) -> Want {
    let mut included = Vec::new();
    for t in img.area(false) {
        if t.end() <= end {
            included.push(t);
            continue;
        }
        if t.offset >= end {
            break;
        }
        return if t.offset + 4 > end {
            Want::Tlv(t.offset, "entry header crosses the area end")
        } else {
            Want::Tlv(t.offset, "runs past the area end")
        };
    }
    if !included.iter().any(|t| t.kind == tlv::SHA256) {
        Want::Reject(Reject::NoHash)
    } else if !included.iter().any(|t| t.kind == tlv::ED25519) {
        Want::Reject(Reject::NoSignature)
    } else {
        Want::BaseWithLen(end)
    }
}

fn required_len(kind: u16) -> Option<(usize, &'static str)> {
    match kind {
        tlv::SEC_CNT => Some((4, "SEC_CNT is not 4 bytes")),
        tlv::SHA256 => Some((32, "SHA256 is not 32 bytes")),
        tlv::KEYHASH => Some((32, "KEYHASH is not 32 bytes")),
        tlv::ED25519 => Some((64, "ED25519 signature is not 64 bytes")),
        _ => None,
    }
}

/// Walk an area's entries in `m` from `from` to `end` as the verifier does; the first entry it
/// refuses (structure, or a known type's length), or `None` if it refuses none.
fn first_refused(m: &[u8], from: usize, end: usize, protected: bool) -> Option<Want> {
    let mut at = from;
    while at < end {
        if at + 4 > end {
            return Some(Want::Tlv(at, "entry header crosses the area end"));
        }
        let (kind, len) = (get_u16(m, at), get_u16(m, at + 2) as usize);
        if at + 4 + len > end {
            return Some(Want::Tlv(at, "runs past the area end"));
        }
        if !protected && kind == tlv::SIG_PURE {
            return Some(Want::Tlv(at + 4, "SIG_PURE"));
        }
        if let Some((need, why)) = required_len(kind)
            && protected == (kind == tlv::SEC_CNT)
            && need != len
        {
            return Some(Want::Tlv(at + 4, why));
        }
        at += 4 + len;
    }
    None
}

fn tlv_length_mutations(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    for t in img.tlvs.clone() {
        let area_end = img.area_end(t.protected);
        let room = area_end - t.value();
        let mut lens = vec![0, t.len.saturating_sub(1), t.len + 1, room, room + 1, 0xFFFF];
        lens.sort();
        lens.dedup();
        let cls = if t.protected { "TLV length: protected" } else { "TLV length: unprotected" };
        for len in lens.into_iter().filter(|l| *l != t.len) {
            let m = with(img, |m| put_u16(m, t.offset + 2, len as u16));
            let want = match first_refused(&m, img.info(t.protected) + 4, area_end, t.protected) {
                Some(w) => Some(w),
                // The protected area still parses (its entries re-cut): the hash catches it.
                None if t.protected => Some(Want::Reject(Reject::HashMismatch)),
                // A PUBKEY that swallows the signature after it.
                None if len == room && t.kind == tlv::PUBKEY => Some(Want::Reject(Reject::NoSignature)),
                None => None,
            };
            run.check(cls, c, format_args!("{} at {:#x}: {len}", tlv::name(t.kind), t.offset), &m, &e, want);
        }
    }
}

fn tlv_type_mutations(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    for t in img.tlvs.clone() {
        let cls = if t.protected { "TLV type: protected" } else { "TLV type: unprotected" };
        for kind in [0x00F0, tlv::SIG_PURE, tlv::SHA256, tlv::KEYHASH, tlv::ED25519, tlv::SEC_CNT] {
            if kind == t.kind {
                continue;
            }
            let m = with(img, |m| put_u16(m, t.offset, kind));
            let want = if t.protected {
                match required_len(kind) {
                    Some((need, why)) if kind == tlv::SEC_CNT && need != t.len => Want::Tlv(t.value(), why),
                    _ => Want::Reject(Reject::HashMismatch),
                }
            } else if kind == tlv::SIG_PURE {
                Want::Tlv(t.value(), "SIG_PURE")
            } else if let Some((_, why)) = required_len(kind).filter(|(need, _)| kind != tlv::SEC_CNT && *need != t.len)
            {
                Want::Tlv(t.value(), why)
            } else {
                match (t.kind, kind) {
                    // No SHA256 TLV left (a 32-byte KEYHASH before the real key TLV is harmless).
                    (tlv::SHA256, _) => Want::Reject(Reject::NoHash),
                    // The key is no longer named (or named by the digest): not a trusted signer.
                    (tlv::KEYHASH | tlv::PUBKEY, _) => Want::Reject(Reject::UnknownKey),
                    (tlv::ED25519, _) => Want::Reject(Reject::NoSignature),
                    // An unprotected unknown TLV turned into a second SHA256/KEYHASH/signature
                    // after the signature was checked, or into an unprotected SEC_CNT (which must
                    // never count): nothing changes.
                    _ => Want::Base,
                }
            };
            run.check(
                cls,
                c,
                format_args!("{} at {:#x} -> {kind:#x}", tlv::name(t.kind), t.offset),
                &m,
                &e,
                Some(want),
            );
        }
    }
}

fn truncations(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    let mut cuts = vec![0, 1, 31, 32, 33, img.hdr_size - 1, img.hdr_size, img.hdr_size + 1];
    for at in [img.payload_end, img.hashed_len] {
        cuts.extend((0..=5).map(|d| at + d));
        cuts.push(at - 1);
    }
    for t in &img.tlvs {
        cuts.extend([t.offset - 1, t.offset, t.offset + 1, t.value(), t.end() - 1, t.end()]);
    }
    cuts.push(img.len() - 1);
    if img.len() < 4096 {
        // Small images: every length.
        cuts.extend(0..img.len());
    }
    cuts.sort();
    cuts.dedup();
    let hashed = img.hashed_len;
    for cut in cuts.into_iter().filter(|c| *c < img.len()) {
        let have = cut as u32;
        let want = if cut < 32 {
            Reject::Truncated { needed: 32, have }
        } else if cut < hashed + 4 {
            Reject::Truncated { needed: hashed as u64 + 4, have }
        } else {
            Reject::TlvAreaTruncated { offset: hashed as u32, end: img.len() as u64, have }
        };
        run.check(
            "truncation (structural boundaries; every length when small)",
            c,
            cut,
            &img.bytes[..cut],
            &e,
            Some(Want::Reject(want)),
        );
    }
}

fn flips(run: &mut Run, c: &Case<'_>, rnd: &mut impl FnMut() -> usize) {
    let img = c.img;
    let e = expect(0);
    let bit = |r: usize| 1u8 << (r % 8);
    // The hashed region outside the structure: header padding, payload, protected values.
    let p = img.payload_end - img.hdr_size;
    let mut at: Vec<usize> = vec![32, 33, img.hdr_size / 2, img.hdr_size - 1];
    at.extend([0, p / 2, p - 1].map(|o| img.hdr_size + o));
    at.extend((0..12).map(|_| img.hdr_size + rnd() % p));
    let small = img.len() < 4096;
    if small {
        // Small images: every byte of the header padding and the payload.
        at.extend(32..img.payload_end);
    }
    for t in img.area(true) {
        at.extend(t.value()..t.end());
    }
    for a in at {
        let m = with(img, |m| m[a] ^= bit(rnd()));
        run.check(
            "flip: hashed region (every byte when small)",
            c,
            a,
            &m,
            &e,
            Some(Want::Reject(Reject::HashMismatch)),
        );
    }
    for t in img.area(false) {
        let (cls, want) = match t.kind {
            tlv::SHA256 => ("flip: SHA256 value", Want::Reject(Reject::HashMismatch)),
            tlv::KEYHASH | tlv::PUBKEY => ("flip: key TLV value", Want::Reject(Reject::UnknownKey)),
            tlv::ED25519 => ("flip: signature", Want::Reject(Reject::BadSignature)),
            _ => ("flip: unknown unprotected value (verdict unchanged)", Want::Base),
        };
        let offsets: Vec<usize> = if small || t.kind != tlv::ED25519 {
            (t.value()..t.end()).collect()
        } else {
            (0..8).map(|_| t.value() + rnd() % t.len).collect()
        };
        for a in offsets {
            let m = with(img, |m| m[a] ^= bit(rnd()));
            run.check(cls, c, a, &m, &e, Some(want.clone()));
        }
    }
}

fn unchanged_verdicts(run: &mut Run, c: &Case<'_>, rnd: &mut impl FnMut() -> usize) {
    let img = c.img;
    let e = expect(0);
    let cls = "bytes after the image (verdict unchanged)";
    let tails: [Vec<u8>; 5] = [
        vec![0xFF],
        vec![0; 4],
        vec![0xFF; 4096],
        (0..300).map(|_| rnd() as u8).collect(),
        // Something that looks like another TLV entry.
        [UNKNOWN.to_le_bytes(), 4u16.to_le_bytes(), [1, 2], [3, 4]].concat(),
    ];
    for tail in tails {
        let m = with(img, |m| m.extend_from_slice(&tail));
        run.check(cls, c, format_args!("{} bytes", tail.len()), &m, &e, Some(Want::Base));
    }
    let cls = "security counter vs stored minimum";
    if let Some(sc) = img.security_counter {
        run.check(cls, c, "minimum = counter", &img.bytes, &expect(sc), Some(Want::Base));
        let want = Want::Reject(Reject::Rollback { image: sc, minimum: sc + 1 });
        run.check(cls, c, "minimum = counter + 1", &img.bytes, &expect(sc + 1), Some(want));
    }
    let cls = "slot capacity (off by one)";
    let len = img.len() as u32;
    let hashed = img.hashed_len as u32;
    for (cap, want) in [
        (len, Want::Base),
        (len - 1, Want::Reject(Reject::Oversize { needed: len as u64, capacity: len - 1 })),
        (hashed + 4, Want::Reject(Reject::Oversize { needed: len as u64, capacity: hashed + 4 })),
        (hashed + 3, Want::Reject(Reject::Oversize { needed: hashed as u64 + 4, capacity: hashed + 3 })),
    ] {
        run.check(cls, c, format_args!("capacity {cap}"), &img.bytes, &Expect { capacity: cap, ..e }, Some(want));
    }
}

/// Unprotected TLVs appended after the signature (the info total adjusted as given).
fn appended_tlvs(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    let info = img.hashed_len;
    let append = |kind: u16, declared: u16, value: &[u8], counted: usize| {
        with(img, |m| {
            m.extend_from_slice(&kind.to_le_bytes());
            m.extend_from_slice(&declared.to_le_bytes());
            m.extend_from_slice(value);
            let tot = get_u16(m, info + 2) as usize + counted;
            put_u16(m, info + 2, tot as u16);
        })
    };
    let len = img.len();
    let cls = "appended TLV: past the end of the file";
    for (declared, present) in [(100u16, 10usize), (1, 0), (0xFF00, 40)] {
        // The info total counts the whole declared value: the area runs past the file.
        let m = append(UNKNOWN, declared, &vec![0xEE; present], 4 + declared as usize);
        let end = len as u64 + 4 + declared as u64;
        let want = if end > e.capacity as u64 {
            Reject::Oversize { needed: end, capacity: e.capacity }
        } else {
            Reject::TlvAreaTruncated { offset: info as u32, end, have: m.len() as u32 }
        };
        run.check(cls, c, format_args!("{declared} declared, {present} present"), &m, &e, Some(Want::Reject(want)));
        // The info total counts only what is present: the entry runs past its area.
        let m = append(UNKNOWN, declared, &vec![0xEE; present], 4 + present);
        let cls = "appended TLV: past its area";
        run.check(
            cls,
            c,
            format_args!("{declared} declared, {present} present"),
            &m,
            &e,
            Some(Want::Tlv(len, "runs past the area end")),
        );
    }
    let cls = "appended TLV: complete (verdict unchanged, longer)";
    for (kind, value) in [
        (UNKNOWN, vec![1u8; 9]),
        (tlv::SHA256, vec![0u8; 32]),
        (tlv::KEYHASH, vec![0u8; 32]),
        (tlv::SEC_CNT, 0u32.to_le_bytes().to_vec()),
        (0xFFFF, vec![]),
    ] {
        let m = append(kind, value.len() as u16, &value, 4 + value.len());
        run.check(cls, c, tlv::name(kind), &m, &e, Some(Want::BaseWithLen(len + 4 + value.len())));
    }
    let m = append(tlv::SIG_PURE, 64, &[0; 64], 68);
    run.check("appended TLV: SIG_PURE", c, "SIG_PURE", &m, &e, Some(Want::Tlv(len + 4, "SIG_PURE")));
}

fn read_errors(run: &mut Run, c: &Case<'_>) {
    let img = c.img;
    let e = expect(0);
    let cls = "read error (flash ECC)";
    let mut faults = vec![(0, Want::Reject(Reject::Unreadable { offset: 0 }))];
    let mid = img.hdr_size + (img.payload_end - img.hdr_size) / 2;
    faults.push((mid, Want::Reject(Reject::Unreadable { offset: (mid & !255) as u32 })));
    for t in &img.tlvs {
        let want = match t.kind {
            tlv::SEC_CNT | tlv::SHA256 | tlv::KEYHASH | tlv::PUBKEY | tlv::ED25519 => {
                Want::Reject(Reject::Unreadable { offset: t.value() as u32 })
            }
            // Unknown values are never read, except the protected ones through the hash.
            _ if t.protected => Want::Reject(Reject::Unreadable { offset: ((t.end() - 1) & !255) as u32 }),
            _ => Want::Base,
        };
        faults.push((t.offset, Want::Reject(Reject::Unreadable { offset: t.offset as u32 })));
        faults.push((t.end() - 1, want));
    }
    for (bad, want) in faults {
        let r = verify(&mut Ecc { bytes: &img.bytes, bad }, &e, &[run.key], &mut fut_image::Ed25519Verify);
        run.judge(cls, c, format_args!("at {bad:#x}"), &img.bytes, r, Some(want));
    }
}

#[test]
fn builder_matches_the_signer() {
    let k = key("test-ed25519-a.pem");
    for n in [1usize, 700, 4096] {
        let opts = SignOptions {
            load_addr: A,
            header_size: HDR,
            version: ImageVersion::new(1, 2, 3, 0),
            security_counter: SEC,
        };
        let signed = sign(&payload(n), &k, &opts).unwrap();
        assert_eq!(Spec::new(payload(n), SEC).build(&k, "").bytes, signed, "{n} bytes");
    }
    // An empty payload: the signer refuses it, and the verifier rejects one made by hand.
    let opts =
        SignOptions { load_addr: A, header_size: HDR, version: ImageVersion::new(1, 0, 0, 0), security_counter: 1 };
    assert_eq!(sign(&[], &k, &opts), Err(SignError::Empty));
    let empty = Spec::new(Vec::new(), SEC).build(&k, "empty");
    assert_eq!(
        check_with(&empty.bytes, &expect(0), &k.trusted()),
        Err(Reject::BadHeader { why: "image size is zero" })
    );
}

#[test]
fn structure_aware_mutations_give_their_named_reasons() {
    let started = std::time::Instant::now();
    let mut run = Run::new();
    let mut x: u64 = 0x5EED_1234_ABCD_0001;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    for img in images() {
        let base = check_with(&img.bytes, &expect(0), &run.key);
        match (&base, img.security_counter) {
            (Ok(v), Some(sc)) => {
                assert_eq!(v.total_len as usize, img.len(), "{}", img.name);
                assert_eq!((v.security_counter, v.digest, v.key_index), (sc, img.digest, 0), "{}", img.name);
                assert_consistent(&img.bytes, v, &run.key);
            }
            (Err(Reject::NoSecurityCounter), None) => {}
            (r, _) => panic!("{}: {r:?}", img.name),
        }
        run.images += 1;
        let c = Case { img: &img, base: &base };
        header_mutations(&mut run, &c);
        info_mutations(&mut run, &c);
        tlv_length_mutations(&mut run, &c);
        tlv_type_mutations(&mut run, &c);
        truncations(&mut run, &c);
        flips(&mut run, &c, &mut rnd);
        unchanged_verdicts(&mut run, &c, &mut rnd);
        appended_tlvs(&mut run, &c);
        read_errors(&mut run, &c);
    }
    println!("{} in {:.1?}", run.summary(), started.elapsed());
    let unpredicted: u32 = run.classes.values().map(|n| n.skipped).sum();
    assert!(unpredicted < 10, "too many mutations without a predicted reason: {}", run.summary());
}

#[test]
fn too_many_tlvs() {
    let k = key("test-ed25519-a.pem");
    let t = k.trusted();
    // 64 entries per area are examined; the 65th is refused.
    let mut s = Spec::new(payload(100), SEC);
    s.trailing = vec![(UNKNOWN, Vec::new()); 64 - 3];
    let img = s.build(&k, "64 unprotected");
    assert!(check_with(&img.bytes, &expect(0), &t).is_ok());
    s.trailing.push((UNKNOWN, Vec::new()));
    let img = s.build(&k, "65 unprotected");
    let last = img.tlvs.last().unwrap();
    assert_eq!(
        check_with(&img.bytes, &expect(0), &t),
        Err(Reject::BadTlvArea { why: "too many TLV entries", offset: last.value() as u32 })
    );
    let mut s = Spec::new(payload(100), SEC);
    s.protected.extend(vec![(UNKNOWN_PROT, Vec::new()); 63]);
    let img = s.build(&k, "64 protected");
    assert!(check_with(&img.bytes, &expect(0), &t).is_ok());
    s.protected.push((UNKNOWN_PROT, Vec::new()));
    let img = s.build(&k, "65 protected");
    let last = img.area(true).last().unwrap();
    assert_eq!(
        check_with(&img.bytes, &expect(0), &t),
        Err(Reject::BadTlvArea { why: "too many TLV entries", offset: last.value() as u32 })
    );
}

#[test]
fn tlv_semantics_of_signed_images() {
    let k = key("test-ed25519-a.pem");
    let t = k.trusted();
    let e = expect(0);
    // The first SEC_CNT decides (as in MCUboot and `inspect`).
    let mut s = Spec::new(payload(64), 9);
    s.protected.push((tlv::SEC_CNT, 2u32.to_le_bytes().to_vec()));
    let img = s.build(&k, "two SEC_CNT");
    let v = check_with(&img.bytes, &e, &t).unwrap();
    assert_eq!(v.security_counter, 9);
    assert_consistent(&img.bytes, &v, &t);
    // A SEC_CNT only in the unprotected area never counts.
    let mut s = Spec::new(payload(64), 9);
    s.protected.clear();
    s.trailing.push((tlv::SEC_CNT, 9u32.to_le_bytes().to_vec()));
    assert_eq!(check_with(&s.build(&k, "").bytes, &e, &t), Err(Reject::NoSecurityCounter));
    // A protected area without SEC_CNT.
    let mut s = Spec::new(payload(64), 9);
    s.protected = vec![(UNKNOWN_PROT, vec![1, 2, 3])];
    assert_eq!(check_with(&s.build(&k, "").bytes, &e, &t), Err(Reject::NoSecurityCounter));
    // A SIG_PURE anywhere is refused by name.
    let mut s = Spec::new(payload(64), 9);
    s.trailing.push((tlv::SIG_PURE, vec![0; 64]));
    let img = s.build(&k, "");
    let at = img.find(tlv::SIG_PURE, false).unwrap().value();
    assert!(matches!(check_with(&img.bytes, &e, &t), Err(Reject::BadTlvArea { offset, .. }) if offset as usize == at));
    // Signed by another key, named by PUBKEY: unknown.
    let mut s = Spec::new(payload(64), 9);
    s.key_tlv = KeyTlv::PubKey;
    assert_eq!(check_with(&s.build(&key("test-ed25519-b.pem"), "").bytes, &e, &t), Err(Reject::UnknownKey));
    // TLV order does not matter for the signature: SHA256 after ED25519 still verifies.
    let img = Spec::new(payload(64), 9).build(&k, "");
    let sha = img.find(tlv::SHA256, false).unwrap();
    let mut m = img.bytes[..sha.offset].to_vec();
    m.extend_from_slice(&img.bytes[sha.end()..]);
    m.extend_from_slice(&img.bytes[sha.offset..sha.end()]);
    let v = check_with(&m, &e, &t).unwrap();
    assert_eq!(v.total_len as usize, m.len());
    assert_consistent(&m, &v, &t);
}
