import type { ClientEvents, EventHandler, FerryClient, Member, PresenceInfo } from "@ferry/client";
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
/** One component's interest in a channel's members. */
export interface PresenceWatcher {
    /** Called with every member, ordered by user, after every full read and every change. */
    readonly members: (members: readonly Member[]) => void;
    /** Called when reading the members failed: what was handed over is stale until the next full read. */
    readonly failed?: () => void;
    /** Called when the server refused the subscribe (the watcher gets nothing more until it acquires again). */
    readonly refused?: (error: RefusalError) => void;
}
/** The reference-counted subscriptions of one client; see the module comment. */
export declare class ChannelRegistry {
    #private;
    /** A registry over `client` that releases a channel `releaseDelayMs` after its last listener leaves. */
    constructor(client: FerryClient, releaseDelayMs: number);
    /** The channels the client is subscribed to through this registry (released ones included until their delay passes). */
    get channels(): readonly string[];
    /** The channels whose members are watched through this registry (released ones included until their delay passes). */
    get presenceChannels(): readonly string[];
    /** The number of listeners a channel has now. */
    listenerCount(channel: string): number;
    /** The number of watchers of a channel's members now. */
    watcherCount(channel: string): number;
    /** Adds `listener` to `channel` (subscribing the client when it is the first); returns its release. */
    acquire<P>(channel: string, listener: ChannelListener<P>): () => void;
    /**
     * Adds `watcher` to the members of `channel` (the first one makes the client track them, with
     * presence `info` when given; a later watcher's info is not sent); returns its release. A
     * watcher gets the members at once when they are known.
     */
    acquirePresence(channel: string, watcher: PresenceWatcher, info?: PresenceInfo): () => void;
}
/** The one registry of `client` (created on first use with `releaseDelayMs`). */
export declare function registryOf(client: FerryClient, releaseDelayMs: number): ChannelRegistry;
