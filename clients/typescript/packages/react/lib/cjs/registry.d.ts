import type { ClientEvents, EventHandler, FerryClient } from "@ferry/client";
/** Why the events of a channel, as the application saw them, are incomplete. */
export type IncompleteCause = Parameters<ClientEvents["incomplete"]>[1];
/** The error the server refused a subscribe with. */
export type RefusalError = Parameters<ClientEvents["subscribeFailed"]>[1];
/** One component's interest in a channel. */
export interface ChannelListener<P> {
    /** Called once per event of the channel. */
    readonly event: EventHandler<P>;
    /** Called when the channel's events have a hole: refetch its state. */
    readonly incomplete?: (cause: IncompleteCause) => void;
    /** Called when the server refused the subscribe (the listener gets no event until it acquires again). */
    readonly refused?: (error: RefusalError) => void;
}
/** The reference-counted subscriptions of one client; see the module comment. */
export declare class ChannelRegistry {
    #private;
    /** A registry over `client` that releases a channel `releaseDelayMs` after its last listener leaves. */
    constructor(client: FerryClient, releaseDelayMs: number);
    /** The channels the client is subscribed to through this registry (released ones included until their delay passes). */
    get channels(): readonly string[];
    /** The number of listeners a channel has now. */
    listenerCount(channel: string): number;
    /** Adds `listener` to `channel` (subscribing the client when it is the first); returns its release. */
    acquire<P>(channel: string, listener: ChannelListener<P>): () => void;
}
/** The one registry of `client` (created on first use with `releaseDelayMs`). */
export declare function registryOf(client: FerryClient, releaseDelayMs: number): ChannelRegistry;
