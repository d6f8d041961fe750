//! Client of the emulator's control channel: newline-delimited JSON on TCP. Requests carry an
//! `id` and get exactly one response with the same `id`; everything with an `event` field is an
//! asynchronous event, kept in order so a test can wait for one instead of sleeping.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct ControlClient {
    name: String,
    stream: TcpStream,
    lines: Receiver<Result<Value, String>>,
    /// Every event received so far, in order.
    events: Vec<Value>,
    /// Which of `events` a wait has returned (each event is returned once).
    taken: Vec<bool>,
    next_id: u64,
}

impl ControlClient {
    pub fn connect(name: &str, port: u16) -> Result<Self> {
        let stream = TcpStream::connect((crate::net::LOOPBACK, port))
            .with_context(|| format!("connecting to the {name} control port {port}"))?;
        let reader = BufReader::new(stream.try_clone()?);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let msg = match line {
                    Ok(l) if l.trim().is_empty() => continue,
                    Ok(l) => serde_json::from_str(&l).map_err(|e| format!("bad JSON {l:?}: {e}")),
                    Err(e) => Err(e.to_string()),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name: name.to_string(),
            stream,
            lines,
            events: Vec::new(),
            taken: Vec::new(),
            next_id: 1,
        })
    }

    /// Sends `cmd` with `args` (a JSON object) and returns the response, failing if it says
    /// `ok: false`.
    pub fn request(&mut self, cmd: &str, args: Value, timeout: Duration) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = match args {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => bail!("control arguments must be an object, got {other}"),
        };
        msg.insert("id".into(), json!(id));
        msg.insert("cmd".into(), json!(cmd));
        let mut line = serde_json::to_vec(&Value::Object(msg))?;
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .with_context(|| format!("sending {cmd} to {}", self.name))?;
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self
                .recv(deadline)
                .with_context(|| format!("{} {cmd}", self.name))?;
            if msg.get("event").is_some() {
                self.events.push(msg);
                continue;
            }
            if msg.get("id") == Some(&json!(id)) {
                if msg.get("ok") == Some(&json!(true)) {
                    return Ok(msg);
                }
                bail!("{} refused {cmd}: {}", self.name, msg);
            }
        }
    }

    /// Waits for the earliest event, not returned by an earlier wait, that satisfies `pred`
    /// (events that arrived while waiting for something else stay available).
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            self.taken.resize(self.events.len(), false);
            if let Some(i) =
                (0..self.events.len()).find(|&i| !self.taken[i] && pred(&self.events[i]))
            {
                self.taken[i] = true;
                return Ok(self.events[i].clone());
            }
            let msg = self
                .recv(deadline)
                .with_context(|| format!("waiting for {what} from {}", self.name))?;
            if msg.get("event").is_some() {
                self.events.push(msg);
            }
        }
    }

    /// Waits for an event of type `kind` whose fields include every field of `fields`.
    pub fn wait_for(&mut self, kind: &str, fields: Value, timeout: Duration) -> Result<Value> {
        let what = format!("event {kind} {fields}");
        self.wait_event(&what, timeout, |ev| {
            ev.get("event") == Some(&json!(kind)) && contains(ev, &fields)
        })
    }

    /// All events received so far (including ones already consumed by waits).
    pub fn events(&mut self) -> &[Value] {
        while let Ok(Ok(msg)) = self.lines.try_recv() {
            if msg.get("event").is_some() {
                self.events.push(msg);
            }
        }
        &self.events
    }

    fn recv(&mut self, deadline: Instant) -> Result<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(anyhow!("control channel: {e}")),
            Err(RecvTimeoutError::Timeout) => bail!("timed out"),
            Err(RecvTimeoutError::Disconnected) => bail!("control channel closed"),
        }
    }
}

/// True when every field of `pattern` (an object) is present in `value` with an equal value.
fn contains(value: &Value, pattern: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(k, v)| value.get(k) == Some(v)),
        Value::Null => true,
        other => value == other,
    }
}
