//! Live capture on a network interface (Linux `AF_PACKET`, through `pnet_datalink`): every frame
//! through the same decoder and flow table as capture files, flows out as they end (idle and
//! active timeouts, checked at least every half second) and all of them at shutdown. Needs
//! `CAP_NET_RAW` only (no root): `setcap cap_net_raw+ep` on the binary, or
//! `AmbientCapabilities=CAP_NET_RAW` in the service unit.
//!
//! The loopback interface is refused: Linux hands a capture socket every loopback packet twice
//! (leaving and arriving), which would double every count.
//!
//! The collector opens the capture socket itself and hands it to `pnet_datalink`, keeping a
//! duplicate of it to read the kernel's own count of the frames it dropped because the socket's
//! receive buffer was full (`PACKET_STATISTICS`), which `pnet_datalink` does not expose. Reading
//! resets the kernel's counts, so every read is added to the source's `capture_drops`.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, getsockopt, setsockopt, socket, sockopt,
};
use pnet_datalink::{Channel, Config};

use super::decode::{DecodeError, decode, linktype};
use super::table::{FlowSettings, FlowTable};
use super::{Attribution, FlowRecord};
use crate::sources::SourceContext;

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No such interface.
    #[error("no network interface named {0:?} (see `ip link`)")]
    NoInterface(String),
    /// The loopback interface.
    #[error("{0}: loopback interfaces cannot be captured (every packet would be seen twice)")]
    Loopback(String),
    /// The socket could not be opened (usually: the process lacks CAP_NET_RAW).
    #[error("{interface}: cannot capture: {source} (the collector needs CAP_NET_RAW)")]
    Open {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not an Ethernet channel.
    #[error("{0}: not an Ethernet interface")]
    NotEthernet(String),
}

/// `getsockopt(fd, SOL_PACKET, PACKET_STATISTICS)`, made with nix's exported helper for socket
/// options (the system call is nix's; this crate has no `unsafe`).
mod packet_statistics {
    use nix::{getsockopt_impl, sockopt_impl};

    sockopt_impl!(
        /// The frames the kernel handed to a packet socket (dropped ones included) and those it
        /// dropped because the socket's receive buffer was full, since the previous read.
        PacketStatistics,
        GetOnly,
        libc::SOL_PACKET,
        libc::PACKET_STATISTICS,
        libc::tpacket_stats
    );
}
use packet_statistics::PacketStatistics;

/// The receive buffer a capture socket asks for when the configuration names none: 4 MiB
/// (the kernel caps it at `net.core.rmem_max`, 208 KiB unless raised).
pub const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// A receiver on `interface`, checked before the collector starts its sources.
pub struct Capture {
    interface: String,
    rx: Box<dyn pnet_datalink::DataLinkReceiver>,
    /// The same socket as `rx`'s (a duplicate descriptor), for the kernel's counts.
    stats: OwnedFd,
}

/// The kernel's counts of one capture socket since the previous read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounts {
    /// Frames the kernel handed to the socket, dropped ones included.
    pub packets: u64,
    /// Frames it dropped because the socket's receive buffer was full.
    pub drops: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Opens `interface` (promiscuous when `promiscuous`), asking the kernel for a receive
    /// buffer of `receive_buffer_bytes` ([`DEFAULT_RECEIVE_BUFFER_BYTES`] when `None`).
    pub fn open(
        interface: &str,
        promiscuous: bool,
        receive_buffer_bytes: Option<usize>,
    ) -> Result<Self, CaptureError> {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == interface)
            .ok_or_else(|| CaptureError::NoInterface(interface.to_owned()))?;
        if iface.is_loopback() {
            return Err(CaptureError::Loopback(interface.to_owned()));
        }
        let open_error = |source: std::io::Error| CaptureError::Open {
            interface: interface.to_owned(),
            source,
        };
        // The socket pnet_datalink would open (AF_PACKET, raw, every protocol), opened here so
        // that a duplicate of it can be kept for the kernel's counts.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(|e| open_error(e.into()))?;
        let wanted = receive_buffer_bytes.unwrap_or(DEFAULT_RECEIVE_BUFFER_BYTES);
        if let Err(e) = setsockopt(&fd, sockopt::RcvBuf, &wanted) {
            tracing::warn!(interface, error = %e, bytes = wanted, "cannot set the capture receive buffer size");
        }
        if let Ok(got) = getsockopt(&fd, sockopt::RcvBuf) {
            tracing::info!(
                interface,
                wanted,
                got,
                "capture receive buffer (the kernel doubles what it grants, capped by net.core.rmem_max)"
            );
        }
        let stats = fd.try_clone().map_err(open_error)?;
        let config = Config {
            read_timeout: Some(Duration::from_millis(500)),
            promiscuous,
            read_buffer_size: 65_536,
            // pnet_datalink binds it, owns it from here and closes it, also on failure.
            socket_fd: Some(fd.into_raw_fd()),
            ..Config::default()
        };
        match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(_tx, rx)) => Ok(Capture {
                interface: interface.to_owned(),
                rx,
                stats,
            }),
            Ok(_) => Err(CaptureError::NotEthernet(interface.to_owned())),
            Err(source) => Err(open_error(source)),
        }
    }

    /// The kernel's counts since the previous call (reading resets them).
    pub fn kernel_counts(&self) -> nix::Result<KernelCounts> {
        let s = getsockopt(&self.stats, PacketStatistics)?;
        Ok(KernelCounts {
            packets: u64::from(s.tp_packets),
            drops: u64::from(s.tp_drops),
        })
    }

    /// Captures until shutdown (blocking: run it on its own thread): frames into flows, flows
    /// into `flow` events (attributed, then pseudonymised), counted in the source's counters
    /// (`events`: flows; `bytes`: frame bytes; `parse_errors`: malformed frames; `capture_drops`:
    /// the kernel's drops, read with the flow timeouts' check and once more at the end).
    pub fn run(
        mut self,
        ctx: SourceContext,
        settings: FlowSettings,
        mut attribution: Attribution,
        privacy: crate::privacy::Privacy,
    ) {
        tracing::info!(interface = %self.interface, "capture started");
        let mut table = FlowTable::new(settings);
        let mut out: Vec<FlowRecord> = Vec::new();
        let mut last_expiry = crate::sources::now_us();
        let mut counts_unreadable = false;
        let mut add_kernel_counts = |capture: &Capture| match capture.kernel_counts() {
            Ok(k) => {
                ctx.counters
                    .capture_drops
                    .fetch_add(k.drops, Ordering::Relaxed);
            }
            Err(e) if !counts_unreadable => {
                counts_unreadable = true;
                tracing::warn!(interface = %capture.interface, error = %e,
                    "cannot read the kernel's capture counts: its drops will not be counted");
            }
            Err(_) => {}
        };
        let send = |out: &mut Vec<FlowRecord>, attribution: &mut Attribution| -> bool {
            for flow in out.drain(..) {
                ctx.counters.events.fetch_add(1, Ordering::Relaxed);
                let input = super::shipper_input(flow, attribution, &privacy);
                if ctx.tx.blocking_send(input).is_err() {
                    return false;
                }
            }
            true
        };
        loop {
            if *ctx.shutdown.borrow() {
                break;
            }
            match self.rx.next() {
                Ok(frame) => {
                    let now = crate::sources::now_us();
                    ctx.counters
                        .bytes
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                    match decode(linktype::ETHERNET, frame, now) {
                        Ok(p) => table.push(&p, &mut out),
                        Err(DecodeError::NotIp) => {}
                        Err(_) => {
                            ctx.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => {
                    tracing::warn!(interface = %self.interface, error = %e, "capture: read failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let stats = table.stats();
            ctx.counters
                .flow_packets
                .store(stats.packets, Ordering::Relaxed);
            ctx.counters
                .flows_evicted
                .store(stats.evicted, Ordering::Relaxed);
            let now = crate::sources::now_us();
            if now - last_expiry >= 500_000 {
                table.expire(now, &mut out);
                last_expiry = now;
                add_kernel_counts(&self);
            }
            if !out.is_empty() && !send(&mut out, &mut attribution) {
                return;
            }
        }
        // Stopping: every flow still open goes out as it is.
        add_kernel_counts(&self);
        table.drain(&mut out);
        let flows = out.len();
        send(&mut out, &mut attribution);
        let stats = table.stats();
        tracing::info!(interface = %self.interface, flushed = flows, packets = stats.packets,
            flows = stats.flows, evicted = stats.evicted,
            kernel_drops = ctx.counters.capture_drops.load(Ordering::Relaxed), "capture stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unknown_interfaces_are_refused_by_name() {
        let lo = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.is_loopback())
            .map(|i| i.name);
        if let Some(lo) = lo {
            let err = Capture::open(&lo, false, None).expect_err("loopback is refused");
            assert!(matches!(err, CaptureError::Loopback(_)), "{err}");
        }
        let err = Capture::open("varde-no-such-if", false, None).expect_err("no such interface");
        assert_eq!(
            err.to_string(),
            "no network interface named \"varde-no-such-if\" (see `ip link`)"
        );
    }
}
