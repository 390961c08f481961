//! `bootproof image`: image recipes and tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use boot_core::layout::{H723, Layout, SlotId};
use bootproof_fixtures::BoardProfile;
use bootproof_rig::image::FirmwareImage;
use clap::{Args, Subcommand};
use fut_image::keys::{SigningKey, hex, load_public};
use fut_image::sign::{SignOptions, sign};
use fut_image::{Ed25519Verify, ImageVersion, verify};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Write the stand-in application image for a board (it runs on the twin only).
    Standin(StandinArgs),
    /// Sign an application for a slot of bootproof's bootloader (MCUboot format, Ed25519).
    Sign(SignArgs),
    /// Verify a signed image as the bootloader would, for a slot.
    Verify(VerifyArgs),
    /// Show what a signed image holds (header, TLVs, hash), without trusting it.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum SlotArg {
    /// Slot A (0x08020000 on the H723).
    A,
    /// Slot B (0x08080000 on the H723).
    B,
}

impl From<SlotArg> for SlotId {
    fn from(s: SlotArg) -> Self {
        match s {
            SlotArg::A => SlotId::A,
            SlotArg::B => SlotId::B,
        }
    }
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The application: ELF or Intel HEX linked for the slot's vector table (slot base +
    /// 0x400), or a raw binary starting with the vector table.
    pub input: PathBuf,
    /// Ed25519 private key, PKCS#8 PEM (`imgtool keygen -t ed25519`). Test keys:
    /// fixtures/keys/ (never for products).
    #[arg(long, short)]
    pub key: PathBuf,
    /// The slot the application is linked for.
    #[arg(long, value_enum)]
    pub slot: SlotArg,
    /// Image version, major.minor.revision[+build] (imgtool's -v).
    #[arg(long, value_parser = parse_version, value_name = "VERSION")]
    pub image_version: ImageVersion,
    /// Security counter: the bootloader refuses images below the highest counter it has
    /// confirmed. Raise it only to lock out older, vulnerable builds.
    #[arg(long, default_value_t = 0)]
    pub security_counter: u32,
    /// Output: the signed image (.bin), what an update downloads.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Also write an Intel HEX to program with a debug probe at the factory: the image plus
    /// its committed word, and its confirmed word with --confirm.
    #[arg(long, value_name = "HEX")]
    pub provision: Option<PathBuf>,
    /// With --provision: install it confirmed (a factory image, not a trial).
    #[arg(long, requires = "provision")]
    pub confirm: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed image (.bin).
    pub image: PathBuf,
    /// A trusted public key: PEM, private (PKCS#8) or public (SPKI). Repeat for several.
    #[arg(long, short, required = true)]
    pub key: Vec<PathBuf>,
    /// The slot to check it for (default: the slot its load address names).
    #[arg(long, value_enum)]
    pub slot: Option<SlotArg>,
    /// The stored minimum security counter to check against.
    #[arg(long, default_value_t = 0)]
    pub min_security_counter: u32,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The signed image.
    pub image: PathBuf,
}

fn parse_version(s: &str) -> Result<ImageVersion, String> {
    ImageVersion::parse(s)
        .ok_or_else(|| format!("`{s}` is not a version: write major.minor.revision[+build], e.g. 1.4.0+7"))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The application's bytes from its vector table on, checked against the slot.
fn payload(input: &std::path::Path, layout: &Layout, slot: SlotId) -> Result<Vec<u8>> {
    let img = FirmwareImage::load(input, Some(layout.vector_table(slot)))?;
    bootproof::firmware::slot_payload(&img, layout, slot).map_err(|e| anyhow::anyhow!(e))
}

fn write_provision_hex(path: &std::path::Path, segments: &[(u32, Vec<u8>)]) -> Result<()> {
    use ihex::Record;
    let mut records = Vec::new();
    let mut upper = None;
    for (addr, data) in segments {
        for (i, chunk) in data.chunks(16).enumerate() {
            let a = addr + (i * 16) as u32;
            if upper != Some(a >> 16) {
                upper = Some(a >> 16);
                records.push(Record::ExtendedLinearAddress((a >> 16) as u16));
            }
            records.push(Record::Data { offset: (a & 0xFFFF) as u16, value: chunk.to_vec() });
        }
    }
    records.push(Record::EndOfFile);
    let text = ihex::create_object_file_representation(&records).context("encoding Intel HEX")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[derive(Debug, Args)]
pub struct StandinArgs {
    /// Board profile: built-in name or TOML.
    #[arg(long)]
    pub board: String,
    /// Version it announces.
    #[arg(long, default_value_t = 1)]
    pub app_version: u32,
    /// Size in bytes (at least 1024).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Vector table address (default: the start of user flash).
    #[arg(long, value_parser = super::flash::parse_addr)]
    pub base: Option<u32>,
    /// Output .bin file.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the stand-in of bootproof's bootloader instead (at the start of flash; it runs
    /// the boot core on the twin), trusting the --trust keys.
    #[arg(long, conflicts_with_all = ["base", "confirms"])]
    pub bootloader: bool,
    /// A public key the image trusts (PEM, private or public): the bootloader's keys, or the
    /// app's for --confirms. Repeat for several.
    #[arg(long, value_name = "PEM")]
    pub trust: Vec<PathBuf>,
    /// The app confirms its slot after it announces itself (a healthy update); without it, an
    /// app under bootproof's bootloader never confirms (a broken update that reverts).
    #[arg(long, requires = "trust")]
    pub confirms: bool,
}

pub fn run(c: &ImageCommand) -> Result<ExitCode> {
    match c {
        ImageCommand::Standin(a) => {
            let p = BoardProfile::resolve(&a.board)?;
            let keys = a.trust.iter().map(|k| load_public(k)).collect::<Result<Vec<_>, _>>()?;
            if a.bootloader {
                if bootproof_twin::bootloader::layout_for(&p).is_none() {
                    bail!(
                        "bootproof's bootloader is laid out for the STM32H723; {} has another flash geometry",
                        p.name
                    );
                }
                if keys.is_empty() {
                    bail!("a bootloader that trusts no key boots nothing: give --trust KEY.pem");
                }
                let img = bootproof_twin::bootloader::bootloader_image(&p, &keys);
                std::fs::write(&a.out, &img.raw).with_context(|| format!("writing {}", a.out.display()))?;
                println!(
                    "{}: bootproof bootloader stand-in for {}, {} bytes at {:#010x}, trusting {} key(s)",
                    a.out.display(),
                    p.name,
                    img.len(),
                    p.flash.base,
                    keys.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let base = a.base.unwrap_or(p.flash.base);
            let flags = if a.confirms { bootproof_twin::bootloader::APP_CONFIRMS } else { 0 };
            let table = if keys.is_empty() { Vec::new() } else { bootproof_twin::bootloader::key_table(&keys) };
            let img = bootproof_twin::standin::build(&p, base, a.app_version, a.size, flags, &table);
            img.check_within(p.flash.base, p.flash.end(), &format!("{} user flash", p.name))?;
            std::fs::write(&a.out, &img.raw).with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "{}: stand-in app v{} for {}, {} bytes at {base:#010x}",
                a.out.display(),
                a.app_version,
                p.name,
                img.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Sign(a) => {
            let layout = H723;
            let slot = SlotId::from(a.slot);
            let key = SigningKey::load(&a.key)?;
            let payload = payload(&a.input, &layout, slot)?;
            let opts = SignOptions {
                load_addr: layout.slot_address(slot),
                header_size: layout.header_size as u16,
                version: a.image_version,
                security_counter: a.security_counter,
            };
            let signed = sign(&payload, &key, &opts)?;
            // Check it as the bootloader will before writing anything.
            let e = boot_core::boot::expect(&layout, slot, 0);
            let v = verify(&mut &signed[..], &e, &[key.trusted()], &mut Ed25519Verify)
                .with_context(|| format!("the signed image does not fit slot {slot}"))?;
            std::fs::write(&a.out, &signed).with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "{}: v{} for slot {slot} ({:#010x}), security counter {}, {} bytes, key hash {}",
                a.out.display(),
                v.version(),
                opts.load_addr,
                v.security_counter,
                signed.len(),
                hex(&key.trusted().hash[..8])
            );
            if let Some(p) = &a.provision {
                let segs = boot_core::provision::segments(&layout, slot, &signed, a.confirm)?;
                write_provision_hex(p, &segs)?;
                println!(
                    "{}: Intel HEX installing it committed{} (program with `bootproof flash --via probe`)",
                    p.display(),
                    if a.confirm { " and confirmed" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Verify(a) => {
            let layout = H723;
            let img = read(&a.image)?;
            let keys = a.key.iter().map(|k| load_public(k)).collect::<Result<Vec<_>, _>>()?;
            let slot = match a.slot {
                Some(s) => SlotId::from(s),
                None => {
                    let load = fut_image::inspect::inspect(&img)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", a.image.display()))?
                        .header
                        .load_addr;
                    layout.slot_at(load).with_context(|| {
                        format!(
                            "{} is linked for {load:#010x}, which is no slot's base; give --slot",
                            a.image.display()
                        )
                    })?
                }
            };
            let e = boot_core::boot::expect(&layout, slot, a.min_security_counter);
            match verify(&mut &img[..], &e, &keys, &mut Ed25519Verify) {
                Ok(v) => {
                    println!(
                        "VALID  {}: v{} for slot {slot}, security counter {}, signed by key {} ({})",
                        a.image.display(),
                        v.version(),
                        v.security_counter,
                        v.key_index,
                        a.key[v.key_index].display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(r) => {
                    println!("INVALID  {} for slot {slot} ({}): {r}", a.image.display(), r.name());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        ImageCommand::Inspect(a) => {
            let img = read(&a.image)?;
            let r = fut_image::inspect::inspect(&img).map_err(|e| anyhow::anyhow!("{}: {e}", a.image.display()))?;
            print!("{}: {r}", a.image.display());
            if let Some(slot) = H723.slot_at(r.header.load_addr) {
                println!("  slot              {slot} of {}", H723.name);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
