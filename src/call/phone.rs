//! The SIP side of one call as its driver sees it: the dialog of a call that came in, or the
//! INVITE we place for the room. Carries out the machine's SIP commands and turns what the far
//! end does into machine inputs; no decisions.

use super::machine::{Input, SipCommand};
use crate::sip::{DialogEvent, OutgoingCall, OutgoingDialog, OutgoingEvent, SipDialog, SipServer};
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) enum Phone {
    In {
        dialog: SipDialog,
        events: mpsc::Receiver<DialogEvent>,
        open: bool,
    },
    Out {
        sip: Arc<SipServer>,
        /// Once the INVITE is out; dropping it CANCELs or BYEs.
        dialog: Option<OutgoingDialog>,
        open: bool,
    },
}

impl Phone {
    pub(super) fn incoming(dialog: SipDialog, events: mpsc::Receiver<DialogEvent>) -> Phone {
        Phone::In {
            dialog,
            events,
            open: true,
        }
    }

    pub(super) fn outgoing(sip: Arc<SipServer>) -> Phone {
        Phone::Out {
            sip,
            dialog: None,
            open: true,
        }
    }

    /// The next thing the far end did; pending for ever when there is nothing more to hear.
    pub(super) async fn next(&mut self) -> Option<Input> {
        loop {
            let input = match self {
                Phone::In { events, open, .. } if *open => match events.recv().await {
                    Some(DialogEvent::Acked) => Some(Input::SipAcked),
                    Some(DialogEvent::Cancelled) => Some(Input::SipCancelled),
                    Some(DialogEvent::Bye) => Some(Input::SipBye),
                    Some(DialogEvent::Info { .. }) | Some(DialogEvent::Renegotiated(_)) => None,
                    Some(DialogEvent::Terminated { why }) => Some(Input::SipTerminated(why)),
                    None => {
                        *open = false;
                        Some(Input::SipTerminated("the SIP dialog is gone".into()))
                    }
                },
                Phone::Out {
                    dialog: Some(d),
                    open,
                    ..
                } if *open => match d.next().await {
                    Some(ev) => outgoing_input(ev),
                    None => {
                        *open = false;
                        Some(Input::SipTerminated("the SIP dialog is gone".into()))
                    }
                },
                _ => std::future::pending().await,
            };
            if input.is_some() {
                return input;
            }
        }
    }

    pub(super) async fn exec(&mut self, cmd: SipCommand) -> Option<Input> {
        let result = match (self, cmd) {
            (Phone::In { dialog, .. }, cmd) => match cmd {
                SipCommand::Ring => dialog.ring(),
                SipCommand::Answer { sdp } => dialog.answer(sdp),
                SipCommand::Reject { code, reason } => dialog.reject(code, reason),
                SipCommand::Bye { reason } => dialog.bye(reason).await,
                SipCommand::Invite { .. } | SipCommand::Cancel => Ok(()),
            },
            (Phone::Out { sip, dialog, .. }, SipCommand::Invite { to, headers, sdp }) => {
                let call = OutgoingCall {
                    to,
                    display_name: None,
                    headers,
                    sdp_offer: sdp,
                };
                match sip.call(call).await {
                    Ok(d) => {
                        tracing::info!(sip_call_id = %d.call_id(), "INVITE sent");
                        *dialog = Some(d);
                        Ok(())
                    }
                    Err(e) => {
                        return Some(Input::CalleeFailed {
                            status: 503,
                            reason: e.to_string(),
                        })
                    }
                }
            }
            (
                Phone::Out {
                    dialog: Some(d), ..
                },
                SipCommand::Cancel,
            ) => {
                d.cancel();
                Ok(())
            }
            (
                Phone::Out {
                    dialog: Some(d), ..
                },
                SipCommand::Bye { reason },
            ) => d.bye(reason).await,
            (Phone::Out { .. }, _) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "SIP command failed");
        }
        None
    }
}

fn outgoing_input(ev: OutgoingEvent) -> Option<Input> {
    Some(match ev {
        OutgoingEvent::Ringing { early_sdp } => Input::CalleeRinging { early_sdp },
        OutgoingEvent::Answered { sdp } => Input::CalleeAnswered { sdp },
        OutgoingEvent::Failed { status, reason } => Input::CalleeFailed { status, reason },
        OutgoingEvent::Bye => Input::SipBye,
        OutgoingEvent::Terminated { why } => Input::SipTerminated(why),
        OutgoingEvent::Trying | OutgoingEvent::Info { .. } | OutgoingEvent::Renegotiated(_) => {
            return None
        }
    })
}
