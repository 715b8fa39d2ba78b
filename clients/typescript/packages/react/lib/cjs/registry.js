"use strict";
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
Object.defineProperty(exports, "__esModule", { value: true });
exports.ChannelRegistry = void 0;
exports.registryOf = registryOf;
/** The reference-counted subscriptions of one client; see the module comment. */
class ChannelRegistry {
    #client;
    #releaseDelayMs;
    #channels = new Map();
    #presence = new Map();
    #stopNotices;
    /** A registry over `client` that releases a channel `releaseDelayMs` after its last listener leaves. */
    constructor(client, releaseDelayMs) {
        this.#client = client;
        this.#releaseDelayMs = releaseDelayMs;
    }
    /** The channels the client is subscribed to through this registry (released ones included until their delay passes). */
    get channels() {
        return [...this.#channels.keys()];
    }
    /** The channels whose members are watched through this registry (released ones included until their delay passes). */
    get presenceChannels() {
        return [...this.#presence.keys()];
    }
    /** The number of listeners a channel has now. */
    listenerCount(channel) {
        return this.#channels.get(channel)?.listeners.size ?? 0;
    }
    /** The number of watchers of a channel's members now. */
    watcherCount(channel) {
        return this.#presence.get(channel)?.listeners.size ?? 0;
    }
    /** Adds `listener` to `channel` (subscribing the client when it is the first); returns its release. */
    acquire(channel, listener) {
        return this.#acquire(this.#channels, channel, listener, (listeners) => {
            const dispatch = (payload, event) => {
                for (const l of [...listeners])
                    l.event(payload, event);
            };
            return this.#client.subscribe(channel, dispatch);
        });
    }
    /**
     * Adds `watcher` to the members of `channel` (the first one makes the client track them, with
     * presence `info` when given; a later watcher's info is not sent); returns its release. A
     * watcher gets the members at once when they are known.
     */
    acquirePresence(channel, watcher, info) {
        const release = this.#acquire(this.#presence, channel, watcher, (listeners) => this.#client.presence(channel, (members) => {
            for (const l of [...listeners])
                l.members(members);
        }, info === undefined ? undefined : { info }));
        const known = this.#client.members(channel);
        if (known !== undefined)
            watcher.members(known);
        return release;
    }
    /** Adds `listener` to the entry of `channel` in `entries`, made by `open` when there is none; returns its release. */
    #acquire(entries, channel, listener, open) {
        let entry = entries.get(channel);
        if (entry === undefined) {
            const listeners = new Set();
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
            if (released)
                return;
            released = true;
            owner.listeners.delete(listener);
            if (owner.listeners.size > 0 || owner.release !== undefined)
                return;
            owner.release = setTimeout(() => {
                owner.release = undefined;
                if (owner.listeners.size > 0 || entries.get(channel) !== owner)
                    return;
                entries.delete(channel);
                owner.unsubscribe();
                if (this.#channels.size === 0 && this.#presence.size === 0) {
                    this.#stopNotices?.();
                    this.#stopNotices = undefined;
                }
            }, this.#releaseDelayMs);
        };
    }
    #notices() {
        const stopIncomplete = this.#client.on("incomplete", (name, cause) => {
            for (const l of [...(this.#channels.get(name)?.listeners ?? [])])
                l.incomplete?.(cause);
        });
        const stopRefused = this.#client.on("subscribeFailed", (name, error) => {
            // The client has dropped the channel's handlers and presence listeners; forget them so
            // that a later acquire asks again.
            const entry = this.#channels.get(name);
            const watched = this.#presence.get(name);
            for (const [entries, dropped] of [
                [this.#channels, entry],
                [this.#presence, watched],
            ]) {
                if (dropped === undefined)
                    continue;
                entries.delete(name);
                if (dropped.release !== undefined)
                    clearTimeout(dropped.release);
            }
            for (const l of [...(entry?.listeners ?? [])])
                l.refused?.(error);
            for (const w of [...(watched?.listeners ?? [])])
                w.refused?.(error);
        });
        const stopFailed = this.#client.on("membersFailed", (name) => {
            for (const w of [...(this.#presence.get(name)?.listeners ?? [])])
                w.failed?.();
        });
        return () => {
            stopIncomplete();
            stopRefused();
            stopFailed();
        };
    }
}
exports.ChannelRegistry = ChannelRegistry;
const registries = new WeakMap();
/** The one registry of `client` (created on first use with `releaseDelayMs`). */
function registryOf(client, releaseDelayMs) {
    let registry = registries.get(client);
    if (registry === undefined) {
        registry = new ChannelRegistry(client, releaseDelayMs);
        registries.set(client, registry);
    }
    return registry;
}
