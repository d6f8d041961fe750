"""Conference emulator: a Jicofo + Jitsi videobridge stand-in for end-to-end tests of the SIP gateway.

Modules (one job each):
  stanzas      pure builders/parsers of the Jingle, presence and IQ payloads (no I/O)
  util         clock, ids, atomic file writes
  audio        tone/WAV sources, paced aiortc tracks, WAV recorder
  bridge       aiortc ORTC transport per Jingle session (ICE + DTLS-SRTP + RTP senders/receivers)
  xmpp         slixmpp plumbing shared by every XMPP client here (plain-TCP login, MUC join, IQ replies)
  focus        the focus' XMPP side: focus@auth login, MUC presence tracking, Jingle/mute IQs, the focus component
  participants emulated web participants (audio source + anonymous MUC occupant)
  conference   Jicofo's conference logic: who gets invited, sessions, source-add/remove, terminate, mute
  control      TCP control channel (newline-delimited JSON) and the event bus
  report       the JSON report
  echo         the scripted gateway stand-in used by echo_occupant.py
"""
