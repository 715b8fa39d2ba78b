// FerryProvider and the hooks. The provider puts one FerryClient (so one socket) and its
// ChannelRegistry in context; the hooks read them:
// - useChannel(channel, handler): the handler is held in a ref, so a new closure on every render
//   neither re-subscribes nor re-renders, and an event re-renders nothing unless the handler
//   sets state;
// - useChannelState(channel, reduce, initial): the opt-in hook that does re-render per event,
//   with the state the reducer folds;
// - useConnectionState(): the client's state through useSyncExternalStore (a render per state
//   change, never per message);
// - usePublish(): a stable publish function;
// - usePresence(channel, { info }): a channel's members, re-rendering after every full read and
//   every join or leave.
// Every effect is safe under StrictMode's mount, unmount, mount: subscriptions are reference
// counted with a delayed release, and a client the provider owns is closed only after the same
// delay, so the immediate remount keeps the socket.

import { createContext, createElement, useCallback, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from "react";
import { FerryClient, type Channel, type ClientState, type EventHandler, type FerryClientOptions, type Member, type PresenceInfo } from "@ferry/client";
import { registryOf, type ChannelRegistry, type IncompleteCause, type RefusalError } from "./registry.js";

/** Any JSON value, as a channel's payload or a publish carries it. */
export type JsonValue = Parameters<FerryClient["publish"]>[1];
/** The acknowledgement of a publish. */
export type Published = Awaited<ReturnType<FerryClient["publish"]>>;
/** The options of a publish. */
export type PublishOptions = NonNullable<Parameters<FerryClient["publish"]>[2]>;
/** A channel as the hooks take it: its name, or a typed view from `client.channel<P>(name)`. */
export type ChannelRef<P> = string | Channel<P>;

/** How long a channel or an owned client is kept after its last user leaves, by default (ms). */
export const DEFAULT_RELEASE_DELAY_MS = 250;

interface FerryContextValue {
  readonly client: FerryClient;
  readonly registry: ChannelRegistry;
}

const FerryContext = createContext<FerryContextValue | undefined>(undefined);

/** The props of FerryProvider: a client the application owns, or the options of one the provider owns. */
export type FerryProviderProps = (
  | {
      /** A client the application made and owns: the provider connects it and never closes it. */
      readonly client: FerryClient;
      readonly options?: undefined;
    }
  | {
      /** Options of a client the provider makes on first render, connects, and closes when it unmounts (later changes are ignored). */
      readonly options: FerryClientOptions;
      readonly client?: undefined;
    }
) & {
  /** Whether the provider calls `connect()` on mount (default true). */
  readonly connect?: boolean;
  /** How long a channel, or an owned client, outlives its last user, in ms (default 250). */
  readonly releaseDelayMs?: number;
  readonly children?: ReactNode;
};

const useIsomorphicLayoutEffect = typeof document === "undefined" ? useEffect : useLayoutEffect;

/** Puts one FerryClient in context for the hooks below it; see FerryProviderProps. */
export function FerryProvider(props: FerryProviderProps): ReactNode {
  const delay = props.releaseDelayMs ?? DEFAULT_RELEASE_DELAY_MS;
  const [owned] = useState(() => (props.client === undefined ? new FerryClient(props.options) : undefined));
  const client = props.client ?? owned;
  if (client === undefined) throw new Error("FerryProvider needs a client or options");
  // registryOf gives one registry per client, so recomputing this is harmless.
  const value = useMemo<FerryContextValue>(() => ({ client, registry: registryOf(client, delay) }), [client, delay]);
  const closing = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const connect = props.connect !== false;

  useEffect(() => {
    if (closing.current !== undefined) {
      clearTimeout(closing.current);
      closing.current = undefined;
    }
    if (connect) client.connect();
    if (client !== owned) return undefined;
    return () => {
      closing.current = setTimeout(() => {
        closing.current = undefined;
        client.close();
      }, delay);
    };
  }, [client, owned, connect, delay]);

  return createElement(FerryContext.Provider, { value }, props.children);
}

function useFerry(): FerryContextValue {
  const value = useContext(FerryContext);
  if (value === undefined) throw new Error("a Ferry hook was used outside a FerryProvider");
  return value;
}

/** The FerryClient of the nearest FerryProvider. */
export function useFerryClient(): FerryClient {
  return useFerry().client;
}

/** Options of useChannel. */
export interface UseChannelOptions {
  /** Called when the channel's events have a hole (a gap, an epoch change, a lost recovery): refetch its state. */
  readonly onIncomplete?: (cause: IncompleteCause) => void;
  /** Called when the server refused the subscribe (forbidden, unknown channel): no event follows until the channel changes or the component remounts. */
  readonly onRefused?: (error: RefusalError) => void;
}

function nameOf<P>(channel: ChannelRef<P> | null | undefined): string | undefined {
  return channel === null || channel === undefined ? undefined : typeof channel === "string" ? channel : channel.name;
}

/**
 * Calls `handler` once per event of `channel` while the component is mounted (`null` holds no
 * channel). The latest handler is called without re-subscribing; the component re-renders only
 * when the handler sets state. Type the payload with the application's generated package:
 * `useChannel<ChannelPayload<"project:alpha:tasks">>("project:alpha:tasks", ...)`, or pass
 * `client.channel<P>(name)`.
 */
export function useChannel<P = JsonValue>(channel: ChannelRef<P> | null | undefined, handler: EventHandler<P>, options?: UseChannelOptions): void {
  const { registry } = useFerry();
  const name = nameOf(channel);
  const handlerRef = useRef(handler);
  const incompleteRef = useRef(options?.onIncomplete);
  const refusedRef = useRef(options?.onRefused);
  useIsomorphicLayoutEffect(() => {
    handlerRef.current = handler;
    incompleteRef.current = options?.onIncomplete;
    refusedRef.current = options?.onRefused;
  });
  useEffect(() => {
    if (name === undefined) return undefined;
    return registry.acquire<P>(name, {
      event: (payload, event) => handlerRef.current(payload, event),
      incomplete: (cause) => incompleteRef.current?.(cause),
      refused: (error) => refusedRef.current?.(error),
    });
  }, [registry, name]);
}

/**
 * The state folded from `channel`'s events by `reduce`, starting at `initial`: the opt-in hook
 * that re-renders on every event (`reduce` must be pure; StrictMode calls it twice). For the
 * latest payload only: `useChannelState(channel, (_, payload) => payload, undefined)`.
 */
export function useChannelState<P, S>(channel: ChannelRef<P> | null | undefined, reduce: (state: S, payload: P, event: Parameters<EventHandler<P>>[1]) => S, initial: S): S {
  const [state, setState] = useState(initial);
  const reduceRef = useRef(reduce);
  useIsomorphicLayoutEffect(() => {
    reduceRef.current = reduce;
  });
  useChannel<P>(channel, (payload, event) => setState((current) => reduceRef.current(current, payload, event)));
  return state;
}

/** The client's connection state (idle, fetching_ticket, connecting, awaiting_welcome, active, backing_off, stopped); re-renders on each change. */
export function useConnectionState(): ClientState {
  const { client } = useFerry();
  const subscribe = useCallback(
    (onChange: () => void) => {
      const stop = client.on("state", onChange);
      return () => {
        stop();
      };
    },
    [client],
  );
  const snapshot = useCallback(() => client.state, [client]);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

/** A stable function that publishes to any channel; settles with the acknowledgement or a PublishError. */
export function usePublish(): (channel: string, payload: JsonValue, options?: PublishOptions) => Promise<Published>;
/** A stable function that publishes to `channel`, typed by its payload. */
export function usePublish<P>(channel: ChannelRef<P>): (payload: P, options?: PublishOptions) => Promise<Published>;
export function usePublish<P>(channel?: ChannelRef<P>): ((channel: string, payload: JsonValue, options?: PublishOptions) => Promise<Published>) | ((payload: P, options?: PublishOptions) => Promise<Published>) {
  const { client } = useFerry();
  const name = nameOf(channel);
  const toAny = useCallback((target: string, payload: JsonValue, options?: PublishOptions) => client.publish(target, payload, options), [client]);
  const toOne = useCallback(
    (payload: P, options?: PublishOptions) => {
      if (name === undefined) return Promise.reject(new Error("usePublish(channel) needs a channel"));
      return client.publish(name, payload as JsonValue, options);
    },
    [client, name],
  );
  return channel === undefined ? toAny : toOne;
}

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

const NOT_READY: PresenceState = { members: [], ready: false };

/**
 * The members of `channel` (`null` watches nothing): the client subscribes to it, reads every
 * member page after each subscribed reply and keeps the list up to date with the channel's
 * presence events (FERRY-PRESENCE-6). The component re-renders after every full read and every
 * join or leave. Components watching one channel share one subscription, with the same delayed
 * release as useChannel, so StrictMode's remount reads nothing twice.
 */
export function usePresence<P = JsonValue>(channel: ChannelRef<P> | null | undefined, options?: UsePresenceOptions): PresenceState {
  const { registry } = useFerry();
  const name = nameOf(channel);
  const [state, setState] = useState<{ readonly channel: string | undefined; readonly presence: PresenceState }>({ channel: undefined, presence: NOT_READY });
  const infoRef = useRef(options?.info);
  const refusedRef = useRef(options?.onRefused);
  useIsomorphicLayoutEffect(() => {
    infoRef.current = options?.info;
    refusedRef.current = options?.onRefused;
  });
  useEffect(() => {
    if (name === undefined) return undefined;
    const put = (presence: PresenceState) => setState({ channel: name, presence });
    return registry.acquirePresence(
      name,
      {
        members: (members) => put({ members, ready: true }),
        failed: () => setState((current) => (current.channel === name && current.presence.ready ? { channel: name, presence: { members: current.presence.members, ready: false } } : current)),
        refused: (error) => {
          put(NOT_READY);
          refusedRef.current?.(error);
        },
      },
      infoRef.current,
    );
  }, [registry, name]);
  // The state of another channel (before a change of `channel` took effect) is not this one's.
  return state.channel === name && name !== undefined ? state.presence : NOT_READY;
}
