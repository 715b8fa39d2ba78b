import { type ReactNode } from "react";
import { FerryClient, type Channel, type ClientState, type EventHandler, type FerryClientOptions, type Member, type PresenceInfo } from "@ferry/client";
import { type IncompleteCause, type RefusalError } from "./registry.js";
/** Any JSON value, as a channel's payload or a publish carries it. */
export type JsonValue = Parameters<FerryClient["publish"]>[1];
/** The acknowledgement of a publish. */
export type Published = Awaited<ReturnType<FerryClient["publish"]>>;
/** The options of a publish. */
export type PublishOptions = NonNullable<Parameters<FerryClient["publish"]>[2]>;
/** A channel as the hooks take it: its name, or a typed view from `client.channel<P>(name)`. */
export type ChannelRef<P> = string | Channel<P>;
/** How long a channel or an owned client is kept after its last user leaves, by default (ms). */
export declare const DEFAULT_RELEASE_DELAY_MS = 250;
/** The props of FerryProvider: a client the application owns, or the options of one the provider owns. */
export type FerryProviderProps = ({
    /** A client the application made and owns: the provider connects it and never closes it. */
    readonly client: FerryClient;
    readonly options?: undefined;
} | {
    /** Options of a client the provider makes on first render, connects, and closes when it unmounts (later changes are ignored). */
    readonly options: FerryClientOptions;
    readonly client?: undefined;
}) & {
    /** Whether the provider calls `connect()` on mount (default true). */
    readonly connect?: boolean;
    /** How long a channel, or an owned client, outlives its last user, in ms (default 250). */
    readonly releaseDelayMs?: number;
    readonly children?: ReactNode;
};
/** Puts one FerryClient in context for the hooks below it; see FerryProviderProps. */
export declare function FerryProvider(props: FerryProviderProps): ReactNode;
/** The FerryClient of the nearest FerryProvider. */
export declare function useFerryClient(): FerryClient;
/** Options of useChannel. */
export interface UseChannelOptions {
    /** Called when the channel's events have a hole (a gap, an epoch change, a lost recovery): refetch its state. */
    readonly onIncomplete?: (cause: IncompleteCause) => void;
    /** Called when the server refused the subscribe (forbidden, unknown channel): no event follows until the channel changes or the component remounts. */
    readonly onRefused?: (error: RefusalError) => void;
}
/**
 * Calls `handler` once per event of `channel` while the component is mounted (`null` holds no
 * channel). The latest handler is called without re-subscribing; the component re-renders only
 * when the handler sets state. Type the payload with the application's generated package:
 * `useChannel<ChannelPayload<"project:alpha:tasks">>("project:alpha:tasks", ...)`, or pass
 * `client.channel<P>(name)`.
 */
export declare function useChannel<P = JsonValue>(channel: ChannelRef<P> | null | undefined, handler: EventHandler<P>, options?: UseChannelOptions): void;
/**
 * The state folded from `channel`'s events by `reduce`, starting at `initial`: the opt-in hook
 * that re-renders on every event (`reduce` must be pure; StrictMode calls it twice). For the
 * latest payload only: `useChannelState(channel, (_, payload) => payload, undefined)`.
 */
export declare function useChannelState<P, S>(channel: ChannelRef<P> | null | undefined, reduce: (state: S, payload: P, event: Parameters<EventHandler<P>>[1]) => S, initial: S): S;
/** The client's connection state (idle, fetching_ticket, connecting, awaiting_welcome, active, backing_off, stopped); re-renders on each change. */
export declare function useConnectionState(): ClientState;
/** A stable function that publishes to any channel; settles with the acknowledgement or a PublishError. */
export declare function usePublish(): (channel: string, payload: JsonValue, options?: PublishOptions) => Promise<Published>;
/** A stable function that publishes to `channel`, typed by its payload. */
export declare function usePublish<P>(channel: ChannelRef<P>): (payload: P, options?: PublishOptions) => Promise<Published>;
/** Options of usePresence. */
export interface UsePresenceOptions {
    /**
     * This session's presence info in the channel (a JSON object of at most 512 bytes), sent with
     * the subscribe when this component is the first to watch the channel's members, and with every
     * re-subscribe after a reconnect. A later change, or another component's info, is not sent
     * until the channel is released and watched again.
     */
    readonly info?: PresenceInfo;
    /** Called when the server refused the subscribe (forbidden, unknown channel, bad_request for a channel without presence). */
    readonly onRefused?: (error: RefusalError) => void;
}
/** What usePresence returns. */
export interface PresenceState {
    /** Every member of the channel, ordered by user; empty until the first full read. */
    readonly members: readonly Member[];
    /** Whether `members` is current: true once the first full read ended, false again after a read failed until the next one ends. */
    readonly ready: boolean;
}
/**
 * The members of `channel` (`null` watches nothing): the client subscribes to it, reads every
 * member page after each subscribed reply and keeps the list up to date with the channel's
 * presence events (FERRY-PRESENCE-6). The component re-renders after every full read and every
 * join or leave. Components watching one channel share one subscription, with the same delayed
 * release as useChannel, so StrictMode's remount reads nothing twice.
 */
export declare function usePresence<P = JsonValue>(channel: ChannelRef<P> | null | undefined, options?: UsePresenceOptions): PresenceState;
