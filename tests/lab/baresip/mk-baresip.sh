#!/bin/bash
# Write a headless baresip 1.0 config folder: loopback only, no registrar, a WAV as microphone,
# received and sent audio recorded by sndfile, JSON control on TCP (ctrl_tcp).
# usage: mk-baresip.sh DIR USER SIP_PORT CTRL_PORT IN_WAV REC_DIR [auto|manual]
# baresip also binds SIP/TLS on SIP_PORT+1, and RTP on 10*SIP_PORT..+9: keep SIP_PORT < 6553
# and instances at least 2 ports apart.
set -euo pipefail
D=$1 U=$2 P=$3 C=$4 IN=$(realpath "$5") REC=$(realpath -m "$6") AM=${7:-manual}
mkdir -p "$D" "$REC"
MODDIR=$(dirname "$(dpkg -L baresip-core | grep '/g711.so$')")
cat > "$D/config" <<CFG
poll_method		epoll
sip_listen		127.0.0.1:$P
net_interface		127.0.0.1
dns_server		127.0.0.1:53
call_local_timeout	30
call_max_calls		4
audio_source		aufile,$IN
audio_player		alsa,null
audio_alert		alsa,null
ausrc_srate		8000
ausrc_channels		1
audio_level		no
rtp_ports		$((P*10))-$((P*10+9))
rtcp_mux		no
jitter_buffer_delay	5-10
module_path		$MODDIR
module			g711.so
module			opus.so
module			aufile.so
module			sndfile.so
module			alsa.so
module			ctrl_tcp.so
module_tmp		uuid.so
module_tmp		account.so
module_app		contact.so
module_app		menu.so
ctrl_tcp_listen		127.0.0.1:$C
snd_path		$REC
opus_bitrate		32000
CFG
# regint=0: never REGISTER (direct calls on loopback).
echo "<sip:$U@127.0.0.1:$P>;regint=0;answermode=$AM;audio_codecs=PCMU,PCMA,opus/48000/2" > "$D/accounts"
: > "$D/contacts"
