import type { RecoveryGap, StreamPosition, Subscribed } from "@ferry/protocol";
/** How an incoming event relates to the last one delivered on its channel. */
export type Arrival = {
    readonly kind: "deliver";
} | {
    readonly kind: "duplicate";
} | {
    readonly kind: "gap";
    readonly expected: number;
    readonly got: number;
} | {
    readonly kind: "epoch_changed";
};
/** Classifies an event at `incoming` against `last` (see the table above). */
export declare function classify(last: StreamPosition, incoming: StreamPosition): Arrival;
/** What a subscribe reply says about the events missed before it (FERRY-RESUME-4). */
export type Resumption = {
    readonly kind: "fresh";
} | {
    readonly kind: "complete";
    readonly replayed: number;
} | {
    readonly kind: "incomplete";
    readonly reason: RecoveryGap;
} | {
    readonly kind: "unreported";
};
/** The last delivered position of one channel. */
export declare class PositionTracker {
    #private;
    /** A tracker whose last delivered position is `last`. */
    constructor(last: StreamPosition);
    /**
     * The tracker after a subscribe reply: a complete (or unreported) recovery keeps `from`, so
     * the replay is delivered; a fresh or incomplete one starts at the reply's head.
     */
    static afterSubscribed(from: StreamPosition | undefined, reply: Subscribed): [PositionTracker, Resumption];
    /** The last delivered position. */
    get last(): StreamPosition;
    /** Classifies `incoming` and moves the position when the event is new. */
    observe(incoming: StreamPosition): Arrival;
}
