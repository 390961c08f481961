//! Updates through bootproof's bootloader over UDS on CAN FD: the host side of
//! `bootproof update --via uds`.
//!
//! 1. [`plan`] checks the image before anything is sent: its header (which slot it is linked
//!    for, version, security counter) and, given the trusted keys, its signature.
//! 2. [`update`] gets the board into the bootloader's update mode (an application answers the
//!    programming session by resetting into it), checks that the image is linked for the slot
//!    the bootloader will write, resumes a download that stopped part-way (same size: the
//!    check routine's verification catches a different image), or erases and downloads from
//!    the start, then verifies and commits through the check routine and resets the board into
//!    the trial.
//!
//! Nothing is committed until the bootloader has verified the whole image in flash, so any
//! interruption leaves the running image booting.

use std::time::Duration;

use bootproof_rig::time::Instant;

use boot_core::layout::{Layout, SlotId};
use bootproof_rig::CanBus;
use bootproof_uds::uds::{self, nrc, session};
use fut_image::{ImageVersion, TrustedKey};

use crate::uds::{UdsClient, UdsError};

/// How long the board may take to come up in update mode after the application's reset.
pub const ENTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per TransferData block before the update gives up (a lost response is answered
/// again by the bootloader without writing twice).
pub const BLOCK_ATTEMPTS: u32 = 3;
/// Attempts of the whole update when the bus fails under it once the bootloader answered (a
/// bus-off, an interface that went down and came back, blocks that kept timing out): each
/// one resumes the download where the bootloader says it stands.
pub const BUS_ATTEMPTS: u32 = 5;
/// The pause before such an attempt (a SocketCAN interface with `restart-ms` is back by then).
pub const BUS_RETRY_WAIT: Duration = Duration::from_secs(1);

/// Why an update did not happen. The running image keeps booting in every case.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The image is not a signed image for bootproof's bootloader.
    #[error("{name}: {why}")]
    BadImage {
        /// The file.
        name: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// The image is linked for the slot the board runs from.
    #[error(
        "{name} is linked for slot {linked}, but the bootloader writes slot {target} (slot {linked} holds the running image); build and sign the slot-{target} variant (e.g. app-slot-{t})",
        t = target.name().to_lowercase()
    )]
    WrongSlot {
        /// The file.
        name: String,
        /// Where it is linked.
        linked: SlotId,
        /// Where the bootloader writes.
        target: SlotId,
    },
    /// The board did not enter update mode.
    #[error(
        "the board did not answer as bootproof's bootloader within {0:?}: is it powered, on this bus, running bootproof's bootloader (or an application that serves DiagnosticSessionControl)?"
    )]
    NoBootloader(Duration),
    /// The bootloader refused to commit the image after verifying it.
    #[error(
        "the bootloader verified the image in slot {slot} and refused it: {reason}; nothing was committed, the running image keeps booting"
    )]
    Refused {
        /// The slot.
        slot: SlotId,
        /// The bootloader's reason (fut-image's reject name, or not-newer-than-the-other-slot).
        reason: String,
    },
    /// A UDS exchange failed.
    #[error("{0}")]
    Uds(#[from] UdsError),
}

/// A checked image, ready to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A name for messages.
    pub name: String,
    /// The slot the image is linked for.
    pub slot: SlotId,
    /// Its version.
    pub version: ImageVersion,
    /// Its security counter.
    pub security_counter: u32,
    /// The signed image (header, payload, TLVs).
    pub image: Vec<u8>,
}

/// Check a signed image for `layout`: the slot it is linked for and, with `keys`, its hash and
/// signature (the bootloader checks again; this catches a wrong key before an erase).
pub fn plan(name: &str, image: Vec<u8>, layout: &Layout, keys: &[TrustedKey]) -> Result<Plan, UpdateError> {
    let bad = |why: String| UpdateError::BadImage { name: name.to_string(), why };
    if image.len() < 32 {
        return Err(bad(format!("{} bytes is not a signed image: sign it with `bootproof image sign`", image.len())));
    }
    let header = fut_image::Header::decode(image[..32].try_into().expect("32 bytes"));
    if header.magic != fut_image::IMAGE_MAGIC {
        return Err(bad("no MCUboot image header (magic 0x96f3b83d): sign it with `bootproof image sign`".into()));
    }
    let slot = SlotId::ALL.into_iter().find(|s| layout.slot_address(*s) == header.load_addr).ok_or_else(|| {
        bad(format!(
            "its load address {:#010x} is neither slot A ({:#010x}) nor slot B ({:#010x}): sign it with --slot a or b",
            header.load_addr,
            layout.slot_address(SlotId::A),
            layout.slot_address(SlotId::B)
        ))
    })?;
    if image.len() as u64 > layout.image_capacity(slot) as u64 {
        return Err(bad(format!(
            "{} bytes do not fit slot {slot} ({} bytes with its trailer)",
            image.len(),
            layout.image_capacity(slot)
        )));
    }
    let expect = fut_image::Expect {
        load_addr: layout.slot_address(slot),
        capacity: layout.image_capacity(slot),
        header_align: layout.header_size,
        min_security_counter: 0,
    };
    let security_counter = fut_image::claimed_security_counter(&mut &image[..], &expect)
        .map_err(|r| bad(format!("its TLVs do not parse: {r}")))?;
    if !keys.is_empty() {
        fut_image::verify(&mut &image[..], &expect, keys, &mut fut_image::Ed25519Verify)
            .map_err(|r| bad(format!("refused before sending (checked against the given trusted keys): {r}")))?;
    }
    Ok(Plan { name: name.to_string(), slot, version: header.version, security_counter, image })
}

/// Where an update stands, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Asking for update mode.
    Entering,
    /// Erasing the target slot.
    Erasing(SlotId),
    /// Resuming a download at this byte.
    Resuming(u32),
    /// Bytes sent of the total.
    Transfer(u32, u32),
    /// Verifying and committing.
    Checking,
    /// Resetting into the trial.
    Resetting,
    /// The bus failed under the update (the error); it goes on where the download stands.
    Retrying(String),
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The slot written.
    pub slot: SlotId,
    /// The byte the download resumed at (0: from the start, after an erase).
    pub resumed_at: u32,
    /// Bytes sent in this run.
    pub sent: u32,
    /// Times a TransferData got no answer in time (a frame or the answer was lost) and the
    /// update went on from where the bootloader's download stood.
    pub resent: u32,
    /// Wall (or virtual) time of the transfer phase (RequestDownload to RequestTransferExit).
    pub transfer: Duration,
    /// Of that, the time the TransferData requests took to send: their frames on the bus (the
    /// rest is waiting for the answers).
    pub on_wire: Duration,
    /// Wall (or virtual) time of the whole update, from update mode to the reset.
    pub total: Duration,
}

/// Get the board into the bootloader's programming session: returns once the bootloader
/// answered.
pub async fn enter(client: &mut UdsClient<'_>) -> Result<(), UpdateError> {
    let deadline = Instant::now() + ENTER_TIMEOUT;
    let mut asked_app = false;
    loop {
        match client.read_did(uds::DID_BOOTLOADER_VERSION).await {
            Ok(_) => break,
            // An application: it serves the programming session by resetting into the bootloader.
            Err(UdsError::Negative { nrc: nrc::SERVICE_NOT_SUPPORTED, .. }) if !asked_app => {
                client.session(session::PROGRAMMING).await?;
                asked_app = true;
            }
            Err(UdsError::Negative { .. }) | Err(UdsError::Timeout { .. }) | Err(UdsError::NoAck { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(UpdateError::NoBootloader(ENTER_TIMEOUT));
        }
        bootproof_rig::time::sleep(Duration::from_millis(20)).await;
    }
    client.session(session::PROGRAMMING).await?;
    Ok(())
}

/// Reach whatever serves UDS on the bus (a board may still be booting): the bootloader's
/// version, or the application's refusal of the request.
pub async fn reach(client: &mut UdsClient<'_>) -> Result<Result<Vec<u8>, UdsError>, UpdateError> {
    let deadline = Instant::now() + ENTER_TIMEOUT;
    loop {
        match client.read_did(uds::DID_BOOTLOADER_VERSION).await {
            Err(UdsError::Timeout { .. }) | Err(UdsError::NoAck { .. }) if Instant::now() < deadline => {
                bootproof_rig::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e @ UdsError::Negative { .. }) => return Ok(Err(e)),
            Err(e) => return Err(e.into()),
            Ok(v) => return Ok(Ok(v)),
        }
    }
}

/// The bootloader's target slot and its download under way: (target, received, size).
pub async fn progress(client: &mut UdsClient<'_>) -> Result<(SlotId, u32, u32), UpdateError> {
    let r = client.read_did(uds::DID_DOWNLOAD_PROGRESS).await?;
    if r.len() < 10 || !(1..=2).contains(&r[0]) {
        return Err(UdsError::UnexpectedResponse {
            service: uds::sid::READ_DATA_BY_IDENTIFIER,
            got: r,
            expected: "target slot 1 or 2, received and size (10 bytes)".into(),
        }
        .into());
    }
    let target = if r[0] == 1 { SlotId::A } else { SlotId::B };
    let le = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    Ok((target, le(1), le(5)))
}

/// Run the update of `plan` over `can`. When the bus fails under it after the bootloader
/// answered (a bus-off, frames lost until a block gave up), it waits [`BUS_RETRY_WAIT`] and
/// goes on from where the bootloader's download stands, up to [`BUS_ATTEMPTS`] times.
pub async fn update(
    can: &mut dyn CanBus,
    layout: &Layout,
    plan: &Plan,
    progress_out: &mut (dyn FnMut(Progress) + Send),
) -> Result<Report, UpdateError> {
    let mut started = None;
    let mut resent = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match update_once(can, layout, plan, progress_out, &mut started, &mut resent).await {
            Err(UpdateError::Uds(e @ (UdsError::Can(_) | UdsError::Timeout { .. })))
                if started.is_some() && attempt < BUS_ATTEMPTS =>
            {
                tracing::warn!("update: {e}; going on where the download stands");
                progress_out(Progress::Retrying(e.to_string()));
                bootproof_rig::time::sleep(BUS_RETRY_WAIT).await;
            }
            Ok(mut report) => {
                if let Some(t) = started {
                    report.total = Instant::now() - t;
                }
                report.resent = resent;
                return Ok(report);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn update_once(
    can: &mut dyn CanBus,
    layout: &Layout,
    plan: &Plan,
    progress_out: &mut (dyn FnMut(Progress) + Send),
    started: &mut Option<Instant>,
    resent: &mut u32,
) -> Result<Report, UpdateError> {
    let mut client = UdsClient::new(can);
    progress_out(Progress::Entering);
    enter(&mut client).await?;
    let start = Instant::now();
    started.get_or_insert(start);
    let (target, received, size) = progress(&mut client).await?;
    if target != plan.slot {
        return Err(UpdateError::WrongSlot { name: plan.name.clone(), linked: plan.slot, target });
    }
    let total = plan.image.len() as u32;
    let base = layout.slot_address(target);
    let resume = received > 0 && size == total && received <= total;
    let at = if resume {
        progress_out(Progress::Resuming(received));
        // A transfer left open by the interrupted host is closed first.
        match client.transfer_exit().await {
            Ok(()) | Err(UdsError::Negative { nrc: nrc::REQUEST_SEQUENCE_ERROR, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        received
    } else {
        progress_out(Progress::Erasing(target));
        client.routine_start(uds::RID_ERASE, &[]).await?;
        0
    };
    let t0 = Instant::now();
    let max = client.request_download(base + at, total).await?;
    let chunk = (max as usize).saturating_sub(2).max(1);
    let mut counter: u8 = 1;
    let mut sent = at;
    let mut failures = 0;
    let mut stood = sent;
    let mut on_wire = Duration::ZERO;
    while sent < total {
        let end = (sent as usize + chunk).min(total as usize);
        let before = client.sending();
        let r = client.transfer_data(counter, &plan.image[sent as usize..end]).await;
        on_wire += client.sending() - before;
        match r {
            Ok(()) => {}
            Err(UdsError::Timeout { .. }) if failures + 1 < BLOCK_ATTEMPTS => {
                // A frame of the block, or its answer, was lost. Ask where the download stands
                // and go on from there: a block stored whole (its answer lost) is not sent again,
                // nor the part of one the bootloader stored while its frames arrived.
                failures += 1;
                *resent += 1;
                let (_, received, _) = progress(&mut client).await?;
                if received > stood {
                    // It got further this time (a second tester cutting in, say): go on.
                    failures = 0;
                    stood = received;
                }
                if received < end as u32 {
                    match client.transfer_exit().await {
                        Ok(()) | Err(UdsError::Negative { nrc: nrc::REQUEST_SEQUENCE_ERROR, .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    client.request_download(base + received, total).await?;
                    counter = 1;
                    sent = received;
                    continue;
                }
            }
            Err(e) => return Err(e.into()),
        }
        failures = 0;
        counter = counter.wrapping_add(1);
        sent = end as u32;
        progress_out(Progress::Transfer(sent, total));
    }
    client.transfer_exit().await?;
    let transfer = t0.elapsed();
    progress_out(Progress::Checking);
    let r = client.routine_start(uds::RID_CHECK, &[]).await?;
    match r.first() {
        Some(0) => {}
        _ => {
            let reason = String::from_utf8_lossy(r.get(1..).unwrap_or_default()).into_owned();
            return Err(UpdateError::Refused { slot: target, reason });
        }
    }
    progress_out(Progress::Resetting);
    client.ecu_reset().await?;
    Ok(Report {
        slot: target,
        resumed_at: at,
        sent: sent - at,
        resent: *resent,
        transfer,
        on_wire,
        total: start.elapsed(),
    })
}
