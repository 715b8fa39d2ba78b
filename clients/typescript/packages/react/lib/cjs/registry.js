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
//   concern; a refused channel is dropped, so a listener that comes later asks again.
Object.defineProperty(exports, "__esModule", { value: true });
exports.ChannelRegistry = void 0;
exports.registryOf = registryOf;
/** The reference-counted subscriptions of one client; see the module comment. */
class ChannelRegistry {
    #client;
    #releaseDelayMs;
    #channels = new Map();
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
    /** The number of listeners a channel has now. */
    listenerCount(channel) {
        return this.#channels.get(channel)?.listeners.size ?? 0;
    }
    /** Adds `listener` to `channel` (subscribing the client when it is the first); returns its release. */
    acquire(channel, listener) {
        const held = listener;
        let entry = this.#channels.get(channel);
        if (entry === undefined) {
            const listeners = new Set();
            const dispatch = (payload, event) => {
                for (const l of [...listeners])
                    l.event(payload, event);
            };
            this.#stopNotices ??= this.#notices();
            entry = { listeners, unsubscribe: this.#client.subscribe(channel, dispatch), release: undefined };
            this.#channels.set(channel, entry);
        }
        if (entry.release !== undefined) {
            clearTimeout(entry.release);
            entry.release = undefined;
        }
        entry.listeners.add(held);
        const owner = entry;
        let released = false;
        return () => {
            if (released)
                return;
            released = true;
            owner.listeners.delete(held);
            if (owner.listeners.size > 0 || owner.release !== undefined)
                return;
            owner.release = setTimeout(() => {
                owner.release = undefined;
                if (owner.listeners.size > 0 || this.#channels.get(channel) !== owner)
                    return;
                this.#channels.delete(channel);
                owner.unsubscribe();
                if (this.#channels.size === 0) {
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
            const entry = this.#channels.get(name);
            if (entry === undefined)
                return;
            // The client has dropped the channel's handlers; forget it so that a later acquire asks again.
            this.#channels.delete(name);
            if (entry.release !== undefined)
                clearTimeout(entry.release);
            for (const l of [...entry.listeners])
                l.refused?.(error);
        });
        return () => {
            stopIncomplete();
            stopRefused();
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
