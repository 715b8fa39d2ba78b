// The adapter contract on a FerryClient, shared by the Node adapter and the browser page:
// one AdapterCommand line in, AdapterReport objects out through `report`.

/** Builds an adapter around a FerryClient class; call `command(line)` per stdin line. */
export function createAdapter({ FerryClient, WebSocket, report, name }) {
  let client;
  const handlers = new Map();
  report({ type: "ready", adapter: name, unsupported: [] });

  const handlerFor = (channel, handler) => {
    const key = `${channel}\u0000${handler}`;
    let fn = handlers.get(key);
    if (fn === undefined) {
      fn = (payload, event) =>
        report({ type: "delivered", handler, channel, message_id: event.message_id, epoch: event.position.epoch, seq: event.position.seq, payload });
      handlers.set(key, fn);
    }
    return fn;
  };
  const unsubscribes = new Map();
  // One presence listener per (channel, handler), reporting every member list it is given.
  const listeners = new Map();
  const listenerFor = (channel, handler) => {
    const key = `${channel}\u0000${handler}`;
    let fn = listeners.get(key);
    if (fn === undefined) {
      fn = (members) =>
        report({
          type: "members",
          channel,
          members: members.map((m) => (m.info === undefined ? { user: m.user, sessions: m.sessions } : { user: m.user, sessions: m.sessions, info: m.info })),
        });
      listeners.set(key, fn);
    }
    return fn;
  };

  const start = (url, credential) => {
    client = new FerryClient({ url, credential, WebSocket, followPlatform: false });
    client.on("subscribed", (channel, _resumption, hold) => report(hold === undefined ? { type: "subscribed", channel } : { type: "subscribed", channel, fence: hold.fence }));
    client.on("subscribeFailed", (channel, error) => report({ type: "refused", channel, code: error.code }));
    client.on("incomplete", (channel, cause) => report({ type: "incomplete", channel, cause: cause.kind === "recovery" ? cause.reason : cause.kind }));
    client.on("notice", (event) => report({ type: "log", message: JSON.stringify(event).slice(0, 4000) }));
    client.on("state", (state) => {
      if (state.kind !== "stopped") return;
      const r = state.reason;
      const reason = { requested: "requested", closed: "closed", credential_rejected: "unauthorized", attempts_exhausted: "attempts_exhausted" }[r.kind] ?? "other";
      const message = r.kind === "closed" ? `closed with ${r.code}: ${r.reason}` : r.kind === "attempts_exhausted" ? `gave up after ${r.retries} retries: ${r.lastFailure}` : r.kind;
      report({ type: "stopped", reason, close_code: r.kind === "closed" ? r.code : null, message: message.slice(0, 4000) });
    });
    client.connect();
  };

  const failureCode = (failure) =>
    failure.kind === "refused" ? failure.error.code : failure.kind === "too_large" ? "message_too_large" : failure.kind === "timed_out" ? "timeout" : "stopped";

  return {
    command(line) {
      let command;
      try {
        command = JSON.parse(line);
      } catch {
        report({ type: "log", message: `not JSON: ${line.slice(0, 200)}` });
        return;
      }
      switch (command.type) {
        case "connect":
          start(command.url, command.credential);
          return;
        case "subscribe": {
          const key = `${command.channel}\u0000${command.handler}`;
          const options = {};
          if (command.info !== undefined) options.info = command.info;
          if (command.hold === true) options.hold = true;
          const removals = [client.subscribe(command.channel, handlerFor(command.channel, command.handler), options)];
          if (command.members === true) {
            const presenceOptions = command.info === undefined ? undefined : { info: command.info };
            removals.push(client.presence(command.channel, listenerFor(command.channel, command.handler), presenceOptions));
          }
          unsubscribes.set(key, () => removals.forEach((remove) => remove()));
          return;
        }
        case "unsubscribe": {
          const key = `${command.channel}\u0000${command.handler}`;
          unsubscribes.get(key)?.();
          unsubscribes.delete(key);
          return;
        }
        case "publish": {
          const options = command.idempotency_key === undefined ? undefined : { idempotencyKey: command.idempotency_key };
          client.publish(command.channel, command.payload, options).then(
            (ack) => report({ type: "published", ref: command.ref, message_id: ack.message_id, epoch: ack.position.epoch, seq: ack.position.seq, duplicate: ack.duplicate }),
            (error) => report({ type: "publish_failed", ref: command.ref, code: failureCode(error.failure), message: String(error.message).slice(0, 4000) }),
          );
          return;
        }
        case "call": {
          const options = command.idempotency_key === undefined ? undefined : { idempotencyKey: command.idempotency_key };
          client.call(command.method, command.params, options).then(
            (answer) => report({ type: "answered", ref: command.ref, result: answer.result, duplicate: answer.duplicate }),
            (error) => report({ type: "call_failed", ref: command.ref, code: failureCode(error.failure), message: String(error.message).slice(0, 4000) }),
          );
          return;
        }
        case "close":
          client?.close();
          return;
        default:
          report({ type: "log", message: `unknown command ${JSON.stringify(command.type)}` });
      }
    },
    close() {
      client?.close();
    },
  };
}
