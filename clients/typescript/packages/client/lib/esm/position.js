// A client's position in one channel's stream (FERRY-EVENT-3, FERRY-EVENT-4, FERRY-SUBSCRIBE-5,
// FERRY-RESUME-4), as crates/protocol's position module defines it: the last delivered event
// (or the subscribe reply's head when none came) is also the `from` of the next re-subscribe.
//
// | incoming event              | arrival        | the client                                  |
// | same epoch, seq = last + 1  | deliver        | hands it over                               |
// | same epoch, seq <= last     | duplicate      | drops it                                    |
// | same epoch, seq > last + 1  | gap            | reports the hole, then hands it over        |
// | another epoch               | epoch_changed  | reports the hole, then hands it over        |
/** Classifies an event at `incoming` against `last` (see the table above). */
export function classify(last, incoming) {
    if (incoming.epoch !== last.epoch)
        return { kind: "epoch_changed" };
    if (incoming.seq <= last.seq)
        return { kind: "duplicate" };
    if (incoming.seq === last.seq + 1)
        return { kind: "deliver" };
    return { kind: "gap", expected: last.seq + 1, got: incoming.seq };
}
/** The last delivered position of one channel. */
export class PositionTracker {
    #last;
    /** A tracker whose last delivered position is `last`. */
    constructor(last) {
        this.#last = last;
    }
    /**
     * The tracker after a subscribe reply: a complete (or unreported) recovery keeps `from`, so
     * the replay is delivered; a fresh or incomplete one starts at the reply's head.
     */
    static afterSubscribed(from, reply) {
        const head = () => new PositionTracker({ ...reply.position });
        if (from === undefined)
            return [head(), { kind: "fresh" }];
        const recovery = reply.recovery;
        if (recovery === undefined)
            return [new PositionTracker(from), { kind: "unreported" }];
        if (recovery.complete)
            return [new PositionTracker(from), { kind: "complete", replayed: recovery.replayed }];
        return [head(), { kind: "incomplete", reason: recovery.reason ?? "history_exceeded" }];
    }
    /** The last delivered position. */
    get last() {
        return this.#last;
    }
    /** Classifies `incoming` and moves the position when the event is new. */
    observe(incoming) {
        const arrival = classify(this.#last, incoming);
        if (arrival.kind !== "duplicate")
            this.#last = { epoch: incoming.epoch, seq: incoming.seq };
        return arrival;
    }
}
