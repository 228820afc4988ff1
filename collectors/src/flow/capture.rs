//! Live capture on a network interface (Linux `AF_PACKET`, through `pnet_datalink`): every frame
//! through the same decoder and flow table as capture files, flows out as they end (idle and
//! active timeouts, checked at least every half second) and all of them at shutdown. Needs
//! `CAP_NET_RAW` only (no root): `setcap cap_net_raw+ep` on the binary, or
//! `AmbientCapabilities=CAP_NET_RAW` in the service unit.
//!
//! The loopback interface is refused: Linux hands a capture socket every loopback packet twice
//! (leaving and arriving), which would double every count.

use std::sync::atomic::Ordering;
use std::time::Duration;

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

/// A receiver on `interface`, checked before the collector starts its sources.
pub struct Capture {
    interface: String,
    rx: Box<dyn pnet_datalink::DataLinkReceiver>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Opens `interface` (promiscuous when `promiscuous`).
    pub fn open(interface: &str, promiscuous: bool) -> Result<Self, CaptureError> {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == interface)
            .ok_or_else(|| CaptureError::NoInterface(interface.to_owned()))?;
        if iface.is_loopback() {
            return Err(CaptureError::Loopback(interface.to_owned()));
        }
        let config = Config {
            read_timeout: Some(Duration::from_millis(500)),
            promiscuous,
            read_buffer_size: 65_536,
            ..Config::default()
        };
        match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(_tx, rx)) => Ok(Capture {
                interface: interface.to_owned(),
                rx,
            }),
            Ok(_) => Err(CaptureError::NotEthernet(interface.to_owned())),
            Err(source) => Err(CaptureError::Open {
                interface: interface.to_owned(),
                source,
            }),
        }
    }

    /// Captures until shutdown (blocking: run it on its own thread): frames into flows, flows
    /// into `flow` events (attributed, then pseudonymised), counted in the source's counters
    /// (`events`: flows; `bytes`: frame bytes; `parse_errors`: malformed frames).
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
            }
            if !out.is_empty() && !send(&mut out, &mut attribution) {
                return;
            }
        }
        // Stopping: every flow still open goes out as it is.
        table.drain(&mut out);
        let flows = out.len();
        send(&mut out, &mut attribution);
        let stats = table.stats();
        tracing::info!(interface = %self.interface, flushed = flows, packets = stats.packets,
            flows = stats.flows, evicted = stats.evicted, "capture stopped");
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
            let err = Capture::open(&lo, false).expect_err("loopback is refused");
            assert!(matches!(err, CaptureError::Loopback(_)), "{err}");
        }
        let err = Capture::open("varde-no-such-if", false).expect_err("no such interface");
        assert_eq!(
            err.to_string(),
            "no network interface named \"varde-no-such-if\" (see `ip link`)"
        );
    }
}
