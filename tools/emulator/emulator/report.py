"""The emulator's JSON report: everything a test needs to assert on without reading logs."""
from __future__ import annotations

import os

from .util import write_json_atomic

REPORT_VERSION = 1


def session_json(conf, s) -> dict:
    rx_ssrcs = {}
    levels = {"count": 0, "min": None, "max": None, "vad": 0}
    rx_packets = rx_bytes = 0
    if s.media is not None:
        for ssrc, st in s.media.rx.items():
            rx_ssrcs[str(ssrc)] = st.to_json()
            rx_packets += st.packets
            rx_bytes += st.bytes
            if st.levels:
                levels["count"] += st.levels
                levels["vad"] += st.vad
                levels["min"] = st.level_min if levels["min"] is None else min(levels["min"], st.level_min)
                levels["max"] = st.level_max if levels["max"] is None else max(levels["max"], st.level_max)
    gw_ssrc = s.gateway_source.ssrc if s.gateway_source is not None else None
    tx = {}
    for name in sorted(set(s.senders) | set(s.packets_sent_closed)):
        p = conf.participants.get(name)
        live = s.media.packets_sent(s.senders[name]) if (s.media is not None and name in s.senders) else 0
        tx[name] = {"ssrc": p.ssrc if p else None, "packets": s.packets_sent_closed.get(name, 0) + live,
                    "active": name in s.senders}
    rec = s.recorder
    return {
        "sid": s.sid,
        "room": s.room.jid,
        "occupant": s.occupant.nick,
        "occupant_jid": s.occupant.occupant_jid,
        "occupant_real_jid": s.occupant.real_jid,
        "is_gateway": s.occupant.is_gateway,
        "features": s.occupant.features,
        "features_source": s.occupant.features_source,
        "presence_features": s.occupant.presence_features,
        "state": s.state,
        "offer": s.offer,
        "t": dict(s.t),
        "initiate_answer": s.initiate_answer,
        "initiate_error": s.initiate_error,
        "gateway": {
            "ssrc": gw_ssrc,
            "source": ({"ssrc": s.gateway_source.ssrc, "name": s.gateway_source.name,
                        "owner": s.gateway_source.owner,
                        "parameters": {p.name: p.value for p in s.gateway_source.parameters}}
                       if s.gateway_source is not None else None),
            "setup": s.setup,
            "ice_ufrag": s.remote_ufrag,
            "fingerprint": ({"hash": s.remote_fingerprints[0].hash, "value": s.remote_fingerprints[0].value,
                             "setup": s.remote_fingerprints[0].setup} if s.remote_fingerprints else None),
            "candidates": [{"ip": c.ip, "port": c.port, "protocol": c.protocol, "type": c.type,
                            "component": c.component, "priority": c.priority} for c in s.remote_candidates],
            "transport_info_count": s.transport_infos,
            "accept": s.accept_info,
        },
        "ice_state": s.ice_state,
        "dtls_state": s.dtls_state,
        "rx": {
            "packets": rx_packets,
            "bytes": rx_bytes,
            "packets_on_gateway_ssrc": (s.media.rx[gw_ssrc].packets
                                        if s.media is not None and gw_ssrc in s.media.rx else 0),
            "ssrcs": rx_ssrcs,
            "audio_levels": levels,
            "seconds_recorded": round(rec.seconds, 3) if rec else 0.0,
            "seconds_decoded": round(rec.samples_decoded / 48000, 3) if rec else 0.0,
            "recording": s.recording_path,
        },
        "tx": tx,
        "stanzas_received": s.stanzas_received,
        "stanzas_sent": s.stanzas_sent,
        "termination": s.termination,
        "errors": s.errors,
    }


def build_report(app) -> dict:
    conf = app.conference
    args = app.args
    occupants = []
    for room in conf.rooms.values():
        for occ in room.occupants.values():
            if occ.nick != "focus":
                occupants.append(occ.to_json())
    # occupants that left are kept through their sessions; list them too
    seen = {(o["room"], o["nick"], o["joined_t"]) for o in occupants}
    for s in conf.sessions.values():
        key = (s.occupant.room, s.occupant.nick, s.occupant.joined_t)
        if key not in seen:
            seen.add(key)
            occupants.append(s.occupant.to_json())
    for o in conf.left_occupants:
        key = (o.room, o.nick, o.joined_t)
        if key not in seen:
            seen.add(key)
            occupants.append(o.to_json())
    rayo = getattr(app, "rayo", None)
    if rayo is not None:
        for o in occupants:
            o["dial"] = rayo.dial_for_occupant(o["room"], o["nick"])
    return {
        "version": REPORT_VERSION,
        "kind": "conference-emulator",
        "t": app.clock.now(),
        "started_at": app.clock.wall_start,
        "pid": os.getpid(),
        "config": {
            "xmpp_host": args.xmpp_host, "xmpp_port": args.xmpp_port, "domain": args.domain,
            "focus_jid": conf.focus_full, "component": app.component_jid,
            "min_participants": args.min_participants, "owner_style": args.owner_style,
            "initiator_style": args.initiator_style, "data_content": args.data_content,
            "disco_timeout": args.disco_timeout, "single_participant_timeout": args.single_participant_timeout,
            "control_port": app.control_port, "out_dir": os.path.abspath(args.out_dir),
            "brewery": args.brewery_jid,
        },
        "ready_t": app.ready_t,
        "rooms": [{"room": r.jid, "name": r.name, "via": r.via, "joined_t": r.joined_t,
                   "jvb_audio_ssrc": r.jvb_audio_ssrc, "jvb_video_ssrc": r.jvb_video_ssrc,
                   "occupants": sorted(n for n in r.occupants if n != "focus")}
                  for r in conf.rooms.values()],
        "participants": [{
            "name": p.name, "endpoint": p.endpoint, "ssrc": p.ssrc, "source_name": p.source_name,
            "msid": p.msid, "tone": p.spec.tone, "wav": p.spec.wav, "level": p.spec.level,
            "rooms": list(p.rooms), "jid": p.jid, "joined_t": p.joined_t, "removed_t": p.removed_t,
            "packets_sent": conf.participant_packets(p),
        } for p in conf.participants.values()],
        "occupants": occupants,
        "sessions": [session_json(conf, s) for s in conf.sessions.values()],
        "conference_requests": conf.conference_requests,
        "mutes": conf.mutes,
        "mute_requests": conf.mute_requests,
        "errors": conf.errors,
        "brewery": rayo.brewery.to_json() if rayo is not None and rayo.brewery is not None else None,
        "dials": rayo.dials if rayo is not None else [],
        "hangups": rayo.hangups if rayo is not None else [],
    }


def write_report(app) -> tuple[str, dict]:
    data = build_report(app)
    path = os.path.join(app.args.out_dir, "report.json")
    write_json_atomic(path, data)
    return path, data
