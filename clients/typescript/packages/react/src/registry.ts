// ChannelRegistry: the channels that React components hold on one FerryClient. It is driven by
// components mounting (acquire) and unmounting (the release acquire returns), and it holds:
// - one subscription of the client per channel, however many components listen to it, so a
//   channel costs one subscribe frame and each event reaches each mounted listener once;
// - a delayed release: when the last listener of a channel leaves, the client's subscription is
//   dropped only after `releaseDelayMs`, and a listener that arrives before then (StrictMode's
//   immediate remount, a route that swaps one view of a channel for another) takes it over, so
//   no unsubscribe and re-subscribe goes out and no event is missed or repeated in between;
// - incomplete notices (a gap, an epoch change, a lost recovery) and refusals (the server refused
//   the subscribe: forbidden, unknown channel) routed to the listeners of the channel they
//   concern; a refused channel is dropped, so a listener that comes later asks again;
// - the same for the channels whose members components watch (acquirePresence): one presence
//   listener of the client per channel, the same delayed release, and a watcher that arrives
//   while the members are known gets them at once.

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

interface Entry<L> {
  readonly listeners: Set<L>;
  readonly unsubscribe: () => void;
  release: ReturnType<typeof setTimeout> | undefined;
}

/** The reference-counted subscriptions of one client; see the module comment. */
export class ChannelRegistry {
  readonly #client: FerryClient;
  readonly #releaseDelayMs: number;
  readonly #channels = new Map<string, Entry<ChannelListener<never>>>();
  readonly #presence = new Map<string, Entry<PresenceWatcher>>();
  #stopNotices: (() => void) | undefined;

  /** A registry over `client` that releases a channel `releaseDelayMs` after its last listener leaves. */
  constructor(client: FerryClient, releaseDelayMs: number) {
    this.#client = client;
    this.#releaseDelayMs = releaseDelayMs;
  }

  /** The channels the client is subscribed to through this registry (released ones included until their delay passes). */
  get channels(): readonly string[] {
    return [...this.#channels.keys()];
  }

  /** The channels whose members are watched through this registry (released ones included until their delay passes). */
  get presenceChannels(): readonly string[] {
    return [...this.#presence.keys()];
  }

  /** The number of listeners a channel has now. */
  listenerCount(channel: string): number {
    return this.#channels.get(channel)?.listeners.size ?? 0;
  }

  /** The number of watchers of a channel's members now. */
  watcherCount(channel: string): number {
    return this.#presence.get(channel)?.listeners.size ?? 0;
  }

  /** Adds `listener` to `channel` (subscribing the client when it is the first); returns its release. */
  acquire<P>(channel: string, listener: ChannelListener<P>): () => void {
    return this.#acquire(this.#channels, channel, listener as ChannelListener<never>, (listeners) => {
      const dispatch: EventHandler<never> = (payload, event) => {
        for (const l of [...listeners]) l.event(payload, event);
      };
      return this.#client.subscribe(channel, dispatch);
    });
  }

  /**
   * Adds `watcher` to the members of `channel` (the first one makes the client track them, with
   * presence `info` when given; a later watcher's info is not sent); returns its release. A
   * watcher gets the members at once when they are known.
   */
  acquirePresence(channel: string, watcher: PresenceWatcher, info?: PresenceInfo): () => void {
    const release = this.#acquire(this.#presence, channel, watcher, (listeners) =>
      this.#client.presence(
        channel,
        (members) => {
          for (const l of [...listeners]) l.members(members);
        },
        info === undefined ? undefined : { info },
      ),
    );
    const known = this.#client.members(channel);
    if (known !== undefined) watcher.members(known);
    return release;
  }

  /** Adds `listener` to the entry of `channel` in `entries`, made by `open` when there is none; returns its release. */
  #acquire<L>(entries: Map<string, Entry<L>>, channel: string, listener: L, open: (listeners: Set<L>) => () => void): () => void {
    let entry = entries.get(channel);
    if (entry === undefined) {
      const listeners = new Set<L>();
      this.#stopNotices ??= this.#notices();
      entry = { listeners, unsubscribe: open(listeners), release: undefined };
      entries.set(channel, entry);
    }
    if (entry.release !== undefined) {
      clearTimeout(entry.release);
      entry.release = undefined;
    }
    entry.listeners.add(listener);
    const owner = entry;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      owner.listeners.delete(listener);
      if (owner.listeners.size > 0 || owner.release !== undefined) return;
      owner.release = setTimeout(() => {
        owner.release = undefined;
        if (owner.listeners.size > 0 || entries.get(channel) !== owner) return;
        entries.delete(channel);
        owner.unsubscribe();
        if (this.#channels.size === 0 && this.#presence.size === 0) {
          this.#stopNotices?.();
          this.#stopNotices = undefined;
        }
      }, this.#releaseDelayMs);
    };
  }

  #notices(): () => void {
    const stopIncomplete = this.#client.on("incomplete", (name, cause) => {
      for (const l of [...(this.#channels.get(name)?.listeners ?? [])]) l.incomplete?.(cause);
    });
    const stopRefused = this.#client.on("subscribeFailed", (name, error) => {
      // The client has dropped the channel's handlers and presence listeners; forget them so
      // that a later acquire asks again.
      const entry = this.#channels.get(name);
      const watched = this.#presence.get(name);
      for (const [entries, dropped] of [
        [this.#channels, entry],
        [this.#presence, watched],
      ] as const) {
        if (dropped === undefined) continue;
        entries.delete(name);
        if (dropped.release !== undefined) clearTimeout(dropped.release);
      }
      for (const l of [...(entry?.listeners ?? [])]) l.refused?.(error);
      for (const w of [...(watched?.listeners ?? [])]) w.refused?.(error);
    });
    const stopFailed = this.#client.on("membersFailed", (name) => {
      for (const w of [...(this.#presence.get(name)?.listeners ?? [])]) w.failed?.();
    });
    return () => {
      stopIncomplete();
      stopRefused();
      stopFailed();
    };
  }
}

const registries = new WeakMap<FerryClient, ChannelRegistry>();

/** The one registry of `client` (created on first use with `releaseDelayMs`). */
export function registryOf(client: FerryClient, releaseDelayMs: number): ChannelRegistry {
  let registry = registries.get(client);
  if (registry === undefined) {
    registry = new ChannelRegistry(client, releaseDelayMs);
    registries.set(client, registry);
  }
  return registry;
}
