// The fault probe's peer: an MQTT client that is not fleetcare's (MQTT.js from npm), in the
// role of a customer's device, and an HTTP client for the read-after-write check. Driven by
// bench/fault_probe.py; prints one JSON object per line on stdout (events the driver waits on).
//
//   node fault_probe_peer.mjs CONFIG.json    ({"mode": "device", ...})
//
// mode "device": publishes readings for a list of assets, QoS 1, persistent session (MQTT 5
// clean start false with a session expiry, or 3.1.1 clean session false). With "contract": true
// it follows the device contract of docs/telemetry.md ("Confirmation: acknowledged means
// stored") as written there, as a firmware developer would: every message is a batch with a
// `seq` (from the clock at start, counting up), kept in a bounded buffer until fleetcare's
// retained {"seq": n} (or {"seq": hi, "from": lo}: lo..hi, and what is below lo is sent again)
// on <root>/<device>/ack covers it, and everything still in the buffer is
// sent again, in order, after every reconnect, and after "resendAfterMs" (default 60 s) with no
// new confirmation, the wait doubling up to 15 min. Without the contract it is a plain MQTT device:
// the library resends what the broker has not acknowledged, nothing more.
// mode "raw": publishes the given payloads once (QoS 1) and reports each PUBACK.
// mode "http": POST /v1/customers then, on another TCP connection, POST /v1/sites for it, N times.

import { readFileSync } from "node:fs";
import http from "node:http";
import mqtt from "mqtt";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const say = (ev, extra = {}) => process.stdout.write(`${JSON.stringify({ ev, ...extra })}\n`);

function connectOptions() {
  const v5 = cfg.protocol === 5;
  return {
    clientId: cfg.clientId,
    username: cfg.user,
    password: cfg.password,
    protocolVersion: v5 ? 5 : 4,
    clean: false,
    properties: v5 ? { sessionExpiryInterval: 7 * 24 * 3600 } : undefined,
    reconnectPeriod: 300,
    connectTimeout: 10_000,
    keepalive: 30,
    resubscribe: false, // the contract code below subscribes itself, as the doc says
  };
}

// MQTT.js calls a publish's callback without the PUBACK when its reason code is a success
// (0x00, or 0x10 "no matching subscribers"): the reason codes are counted off the wire
const wireReasons = {}; // PUBACK reason code -> count (every PUBACK: first sends and resends)
function watchPubacks(client) {
  client.on("packetreceive", (packet) => {
    if (packet.cmd !== "puback") return;
    const code = packet.reasonCode ?? 0;
    wireReasons[code] = (wireReasons[code] ?? 0) + 1;
  });
}
function reasonOf(packet) {
  if (packet && typeof packet.reasonCode === "number") return packet.reasonCode;
  return 0;
}

async function device() {
  const topic = `${cfg.root}/${cfg.user}/telemetry`;
  const ackTopic = `${cfg.root}/${cfg.user}/ack`;
  const total = cfg.readings;
  const per = cfg.perMessage;
  const assets = cfg.assets;
  const metric = cfg.metric;
  const t0 = cfg.startMs;
  const reasons = {}; // errors (reason codes >= 0x80) of first acknowledgements; 0: success
  let ackedReadings = 0; // readings whose first PUBACK came (any reason code)
  let nextReport = cfg.reportEvery;
  const firstAck = new Set(); // message indexes already counted
  let sent = 0; // publishes handed to the library (first sends and resends)
  let resent = 0;
  let connects = 0;
  let sessionsLost = 0;
  let confirmedSeq = -1;
  let confirmations = 0; // ack messages received
  let dropped = 0;
  const maxBuffer = cfg.maxBuffer ?? 10_000; // messages, as the reference devices keep
  const resendAfterMs = cfg.resendAfterMs ?? 60_000; // silence before sending the buffer again
  let resendWait = resendAfterMs;
  let quietSince = Date.now(); // the last confirmation that removed something, or resend
  let silenceResends = 0;

  // the messages, built on demand: message i holds readings i*per .. i*per+per-1
  const seqBase = Date.now() * 1000; // "microseconds since the epoch at boot, and count up"
  const nMessages = Math.ceil(total / per);
  function payload(i) {
    const readings = [];
    for (let k = i * per; k < Math.min(total, (i + 1) * per); k++) {
      readings.push({
        asset: assets[k % assets.length],
        ts: t0 + k, // one millisecond per reading: every (asset, metric, ts) is new
        metrics: { [metric]: 100 + (k % 997) / 10 },
      });
    }
    const body = { readings };
    if (cfg.contract) body.seq = seqBase + i;
    return JSON.stringify(body);
  }

  const buffer = []; // contract: [seq, index] of messages sent and not yet confirmed, in order
  let next = 0; // next message index never sent
  let inflight = 0;
  const window = cfg.window ?? 200;
  const client = mqtt.connect(cfg.url, connectOptions());
  watchPubacks(client);
  let connected = false;

  function onPuback(i, err, packet) {
    inflight -= 1;
    const code = err ? (err.code ?? -1) : reasonOf(packet);
    if (!firstAck.has(i) && !err) {
      firstAck.add(i);
      reasons[code] = (reasons[code] ?? 0) + 1;
      ackedReadings += Math.min(per, total - i * per);
      while (ackedReadings >= nextReport) {
        say("acked", { readings: ackedReadings });
        nextReport += cfg.reportEvery;
      }
      if (firstAck.size === nMessages) {
        say("all_acked", { readings: ackedReadings, pubackReasons: wireReasons });
      }
    }
    pump();
  }

  function send(i) {
    inflight += 1;
    sent += 1;
    client.publish(topic, payload(i), { qos: 1 }, (err, packet) => onPuback(i, err, packet));
  }

  // first sends, paced by a window of unacknowledged messages; only while connected (a message
  // made while offline waits in the buffer and goes after the resend, oldest first)
  function pump() {
    while (connected && next < nMessages && inflight < window) {
      if (cfg.contract) {
        if (buffer.length === 0) quietSince = Date.now(); // the wait starts with this one
        if (buffer.length >= maxBuffer) {
          buffer.shift(); // bounded: the oldest goes and is counted
          dropped += 1;
        }
        buffer.push([seqBase + next, next]);
      }
      send(next);
      next += 1;
    }
    maybeDone();
  }

  let finished = false;
  function maybeDone() {
    if (finished || next < nMessages || firstAck.size < nMessages) return;
    if (cfg.contract && buffer.length > 0) return;
    finished = true;
    if (cfg.contract) say("all_confirmed", { confirmedSeq: confirmedSeq - seqBase });
    report();
    if (!cfg.stayConnected) client.end(false, {}, () => process.exit(0));
  }

  function report() {
    say("report", {
      messages: nMessages,
      readings: total,
      ackedReadings,
      sent,
      resent,
      connects,
      sessionsLost,
      reasons,
      pubackReasons: wireReasons,
      buffered: buffer.length,
      silenceResends,
      dropped,
      confirmed: confirmedSeq - seqBase,
      oldestUnconfirmed: buffer.length ? buffer[0][1] : null,
      next,
      inflight,
      connected,
      confirmations,
    });
  }

  client.on("connect", (connack) => {
    connects += 1;
    connected = true;
    const present = Boolean(connack.sessionPresent);
    if (connects > 1 && !present) sessionsLost += 1;
    say("connected", { n: connects, sessionPresent: present });
    if (cfg.contract) {
      // 3. read your confirmations: on every connection, whatever session present says (a
      // broker restored from a save taken between CONNECT and SUBSCRIBE has the session and
      // not the subscription); "subscribe": "when-session-lost" is the reading of the doc
      // before that was said, which the probe found stalling
      if (cfg.subscribe !== "when-session-lost" || connects === 1 || !present) {
        client.subscribe(ackTopic, { qos: 1 });
      }
      // 4. send again after every reconnect everything still in the buffer, in order
      if (connects > 1) {
        quietSince = Date.now();
        for (const [, i] of buffer.slice()) {
          if (i < next) {
            resent += 1;
            send(i);
          }
        }
      }
    }
    pump();
  });
  client.on("close", () => {
    if (connected) say("disconnected", {});
    connected = false;
  });
  client.on("error", (e) => say("error", { message: String(e.message ?? e) }));
  let resentBelow = null; // the last "from" that made us send again
  client.on("message", (t, message) => {
    if (t !== ackTopic) return;
    let seq, from;
    try {
      ({ seq, from } = JSON.parse(message.toString()));
    } catch {
      return;
    }
    confirmations += 1;
    if (typeof seq !== "number") return;
    const held = buffer.length;
    if (typeof from !== "number") {
      // {"seq": n}: everything up to n; a lower number than one already had changes nothing
      if (seq <= confirmedSeq) return;
      confirmedSeq = seq;
      while (buffer.length > 0 && buffer[0][0] <= seq) buffer.shift();
      if (buffer.length < held) heard();
      maybeDone();
      return;
    }
    // {"seq": hi, "from": lo}: drop lo..hi; what is buffered below lo never reached fleetcare:
    // send it again now, in order, once per new "from"
    confirmedSeq = Math.max(confirmedSeq, seq);
    let kept = 0;
    for (const entry of buffer) {
      if (entry[0] < from || entry[0] > seq) buffer[kept++] = entry;
    }
    buffer.length = kept;
    if (buffer.length < held) heard();
    if (from !== resentBelow) {
      resentBelow = from;
      for (const [s, i] of buffer.slice()) {
        if (s < from && i < next) {
          resent += 1;
          send(i);
        }
      }
    }
    maybeDone();
  });
  function heard() {
    quietSince = Date.now();
    resendWait = resendAfterMs;
  }
  // 3. (end) unconfirmed messages and no new confirmation for a while: send them again, in
  // order (what the broker dropped at the end of a burst has no newer message behind it)
  if (cfg.contract) {
    setInterval(() => {
      if (!connected || buffer.length === 0 || Date.now() - quietSince < resendWait) return;
      quietSince = Date.now();
      resendWait = Math.min(2 * resendWait, 900_000);
      silenceResends += 1;
      for (const [, i] of buffer.slice()) {
        if (i < next) {
          resent += 1;
          send(i);
        }
      }
    }, 250);
  }
  process.on("SIGUSR1", report);
  // diagnosis of a stalled confirmation channel: subscribe again (the retained confirmation
  // comes with the SUBACK), or drop the connection and connect again (a resend follows)
  process.on("SIGUSR2", () => {
    client.subscribe(ackTopic, { qos: 1 });
    setTimeout(report, 5000);
  });
  process.on("SIGWINCH", () => {
    client.end(true, {}, () => {
      client.reconnect();
      setTimeout(report, 8000);
    });
  });
  process.on("SIGTERM", () => {
    report();
    process.exit(0);
  });
}

async function raw() {
  const client = mqtt.connect(cfg.url, connectOptions());
  await new Promise((resolve) => client.once("connect", resolve));
  const results = [];
  for (const p of cfg.payloads) {
    const body = typeof p === "string" ? p : JSON.stringify(p);
    const code = await new Promise((resolve) =>
      client.publish(cfg.topic, body, { qos: 1 }, (err, packet) =>
        resolve(err ? `error ${err.message}` : reasonOf(packet)),
      ),
    );
    results.push({ bytes: Buffer.byteLength(body), puback: code });
  }
  say("raw_done", { results });
  client.end(false, {}, () => process.exit(0));
}

function request(agent, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: cfg.host,
        port: cfg.port,
        method,
        path,
        agent,
        headers: {
          authorization: `Bearer ${cfg.key}`,
          "content-type": "application/json",
          ...(data ? { "content-length": data.length } : {}),
        },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve([res.statusCode, Buffer.concat(chunks).toString()]));
      },
    );
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

async function httpLoop() {
  // two agents, each keeping its own connection: the read goes on a connection other than
  // the write's, and follows the write's response at once
  const writer = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const reader = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let ok = 0;
  const failures = [];
  for (let i = 0; i < cfg.n; i++) {
    const slug = `${cfg.prefix}-${i}`;
    const [s1, b1] = await request(writer, "POST", "/v1/customers", { slug, name: slug });
    if (s1 !== 201) {
      failures.push({ i, step: "customer", status: s1, body: b1.slice(0, 200) });
      continue;
    }
    const customer = JSON.parse(b1).id;
    const [s2, b2] = await request(reader, "POST", "/v1/sites", {
      customer_id: customer,
      ref: `S${i}`,
      name: "probe site",
    });
    const [s3, b3] = await request(reader, "GET", `/v1/customers/${customer}`);
    if (s2 === 201 && s3 === 200) ok += 1;
    else failures.push({ i, site: s2, read: s3, body: (b2 + b3).slice(0, 200) });
  }
  say("http_done", { n: cfg.n, ok, failures: failures.slice(0, 10), failed: failures.length });
  writer.destroy();
  reader.destroy();
}

async function watch() {
  // the retained confirmation the broker holds for this device (a second connection)
  const client = mqtt.connect(cfg.url, { ...connectOptions(), clean: true, properties: undefined });
  const seen = [];
  client.on("message", (_t, m, packet) => seen.push({ body: m.toString(), retain: packet.retain }));
  await new Promise((resolve) => client.once("connect", resolve));
  client.subscribe(`${cfg.root}/${cfg.user}/ack`, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  say("watch_done", { seen });
  client.end(false, {}, () => process.exit(0));
}

async function forget() {
  // end a client id's persistent session (a clean start discards it), so that a stopped
  // member of a shared subscription stops taking its share
  const client = mqtt.connect(cfg.url, { ...connectOptions(), clean: true, properties: undefined });
  await new Promise((resolve) => client.once("connect", resolve));
  say("forgotten", { clientId: cfg.clientId });
  client.end(false, {}, () => process.exit(0));
}

const modes = { device, raw, http: httpLoop, watch, forget };
await modes[cfg.mode]();
