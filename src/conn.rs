//! The state of one channel: its link, the sender's side and the
//! receiver's side, behind one hub (one mutex, one set of waiters).
//!
//! A one-way handle uses the side of its role. A duplex channel is one
//! `Conn` shared by a registry and an attachments: each side of the
//! channel sends to the other and receives from it on the one socket, and
//! whichever handle reads the socket hands every message to the side it is
//! meant for (ATTACH, REF, RETIRE to the receiving side; RELEASE,
//! RETIRE_ACK to the sending side), waking the other handle's waiters.

use std::sync::Arc;

use crate::attachments::{self, Attachments, AttachmentsOptions};
use crate::channel::Channel;
use crate::error::{Error, Result, Status};
use crate::hub::{Hub, Unstarted};
use crate::link::{Endpoint, Incoming, Link, Roles};
use crate::registry::{self, Registry, RegistryOptions};
use crate::wire::Ext;

pub(crate) struct Conn {
    pub link: Link,
    pub tx: registry::Side,
    pub rx: attachments::Side,
}

/// The two sides of a `Conn` as the owner of its link's messages, each
/// used only if the link takes its role.
pub(crate) struct Both<'a> {
    roles: Roles,
    tx: &'a mut registry::Side,
    rx: &'a mut attachments::Side,
}

impl<'a> Both<'a> {
    pub fn new(roles: Roles, tx: &'a mut registry::Side, rx: &'a mut attachments::Side) -> Self {
        Both { roles, tx, rx }
    }

    /// The peer is gone, found by a failed send rather than read: each
    /// side learns it as if the hang-up had been read. A ring the peer
    /// broke while dying has poisoned the link by then; the rest is done
    /// all the same.
    pub fn gone(&mut self, link: &mut Link) {
        let _ = self.apply(link, Incoming::Gone);
    }
}

impl Endpoint for Both<'_> {
    fn apply(&mut self, link: &mut Link, m: Incoming) -> Result<()> {
        // The link delivers only messages for a role it takes.
        let to_receiver = match &m {
            Incoming::Attach(..) | Incoming::AttachLost(_) => true,
            Incoming::Ext(Ext::Ref(_) | Ext::Retire { .. }) => true,
            Incoming::Ext(_) => false,
            Incoming::Gone => {
                // Both sides see the hang-up: the receiving side first takes
                // what the peer pushed before it went, then the sending side
                // takes its releases and reclaims the rest. Both run even if
                // the first fails.
                let r = if self.roles.recv {
                    self.rx.apply(link, Incoming::Gone)
                } else {
                    Ok(())
                };
                let t = if self.roles.send {
                    self.tx.apply(link, Incoming::Gone)
                } else {
                    Ok(())
                };
                return r.and(t);
            }
        };
        match (to_receiver, self.roles.recv, self.roles.send) {
            (true, true, _) => self.rx.apply(link, m),
            (false, _, true) => self.tx.apply(link, m),
            _ => Err(Error::new(
                Status::Protocol,
                format!("{m:?} is for a role this side does not take"),
            )),
        }
    }

    fn wants_more(&self) -> bool {
        !self.roles.recv || self.rx.wants_more()
    }
}

/// Makes a registry and an attachments that share `chan`, which they own
/// from now on (also when this fails: it is then closed): a duplex
/// channel. The peer must make one too. The channel closes when both
/// handles are freed.
///
/// `vox_compat` must be the same in both options: with it nothing is sent
/// but ATTACHes, as a vox peer does on its end of one socket pair; without
/// it HELLO says both roles, and the ring path (unless either option turns
/// it off) runs in each direction, with the registry's `ring_capacity`.
pub fn duplex(
    chan: Channel,
    ropts: RegistryOptions,
    aopts: AttachmentsOptions,
) -> Result<(Registry, Attachments)> {
    let (r, a) = prepare(ropts, aopts)?;
    Ok(start(chan, r, a))
}

/// Checks both options and makes what a duplex channel needs besides a
/// socket; `start` then cannot fail.
pub fn prepare(
    ropts: RegistryOptions,
    aopts: AttachmentsOptions,
) -> Result<(Unstarted<RegistryOptions>, Unstarted<AttachmentsOptions>)> {
    if ropts.vox_compat != aopts.vox_compat {
        return Err(Error::new(
            Status::InvalidArgument,
            "duplex: vox compatibility must be set in both options or in neither",
        ));
    }
    Ok((Registry::prepare(ropts)?, Attachments::prepare(aopts)?))
}

/// Starts a duplex channel from prepared options; cannot fail.
pub fn start(
    chan: Channel,
    r: Unstarted<RegistryOptions>,
    a: Unstarted<AttachmentsOptions>,
) -> (Registry, Attachments) {
    let ring = registry::ring_capacities(&r.opts).filter(|_| a.opts.ring);
    let mut link = Link::new(chan, Roles::DUPLEX, ring, !r.opts.vox_compat);
    attachments::say_hello(&mut link, &a.opts);
    let fd = link.fd();
    let conn = Conn {
        tx: registry::new_side(&r.opts),
        rx: attachments::new_side(&a.opts),
        link,
    };
    // One hub, so a thread waiting on either handle is woken by whatever
    // the other reads; the attachments' own wake-up fd is not needed.
    let hub = Arc::new(Hub::new(r.wake, fd, conn));
    tracing::debug!(fd, "duplex channel created");
    (
        Registry::from_hub(hub.clone(), r.opts),
        Attachments::from_hub(hub, a.opts),
    )
}
