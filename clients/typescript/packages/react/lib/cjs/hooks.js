"use strict";
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
Object.defineProperty(exports, "__esModule", { value: true });
exports.DEFAULT_RELEASE_DELAY_MS = void 0;
exports.FerryProvider = FerryProvider;
exports.useFerryClient = useFerryClient;
exports.useChannel = useChannel;
exports.useChannelState = useChannelState;
exports.useConnectionState = useConnectionState;
exports.usePublish = usePublish;
exports.usePresence = usePresence;
const react_1 = require("react");
const client_1 = require("@ferry/client");
const registry_js_1 = require("./registry.js");
/** How long a channel or an owned client is kept after its last user leaves, by default (ms). */
exports.DEFAULT_RELEASE_DELAY_MS = 250;
const FerryContext = (0, react_1.createContext)(undefined);
const useIsomorphicLayoutEffect = typeof document === "undefined" ? react_1.useEffect : react_1.useLayoutEffect;
/** Puts one FerryClient in context for the hooks below it; see FerryProviderProps. */
function FerryProvider(props) {
    const delay = props.releaseDelayMs ?? exports.DEFAULT_RELEASE_DELAY_MS;
    const [owned] = (0, react_1.useState)(() => (props.client === undefined ? new client_1.FerryClient(props.options) : undefined));
    const client = props.client ?? owned;
    if (client === undefined)
        throw new Error("FerryProvider needs a client or options");
    // registryOf gives one registry per client, so recomputing this is harmless.
    const value = (0, react_1.useMemo)(() => ({ client, registry: (0, registry_js_1.registryOf)(client, delay) }), [client, delay]);
    const closing = (0, react_1.useRef)(undefined);
    const connect = props.connect !== false;
    (0, react_1.useEffect)(() => {
        if (closing.current !== undefined) {
            clearTimeout(closing.current);
            closing.current = undefined;
        }
        if (connect)
            client.connect();
        if (client !== owned)
            return undefined;
        return () => {
            closing.current = setTimeout(() => {
                closing.current = undefined;
                client.close();
            }, delay);
        };
    }, [client, owned, connect, delay]);
    return (0, react_1.createElement)(FerryContext.Provider, { value }, props.children);
}
function useFerry() {
    const value = (0, react_1.useContext)(FerryContext);
    if (value === undefined)
        throw new Error("a Ferry hook was used outside a FerryProvider");
    return value;
}
/** The FerryClient of the nearest FerryProvider. */
function useFerryClient() {
    return useFerry().client;
}
function nameOf(channel) {
    return channel === null || channel === undefined ? undefined : typeof channel === "string" ? channel : channel.name;
}
/**
 * Calls `handler` once per event of `channel` while the component is mounted (`null` holds no
 * channel). The latest handler is called without re-subscribing; the component re-renders only
 * when the handler sets state. Type the payload with the application's generated package:
 * `useChannel<ChannelPayload<"project:alpha:tasks">>("project:alpha:tasks", ...)`, or pass
 * `client.channel<P>(name)`.
 */
function useChannel(channel, handler, options) {
    const { registry } = useFerry();
    const name = nameOf(channel);
    const handlerRef = (0, react_1.useRef)(handler);
    const incompleteRef = (0, react_1.useRef)(options?.onIncomplete);
    const refusedRef = (0, react_1.useRef)(options?.onRefused);
    useIsomorphicLayoutEffect(() => {
        handlerRef.current = handler;
        incompleteRef.current = options?.onIncomplete;
        refusedRef.current = options?.onRefused;
    });
    (0, react_1.useEffect)(() => {
        if (name === undefined)
            return undefined;
        return registry.acquire(name, {
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
function useChannelState(channel, reduce, initial) {
    const [state, setState] = (0, react_1.useState)(initial);
    const reduceRef = (0, react_1.useRef)(reduce);
    useIsomorphicLayoutEffect(() => {
        reduceRef.current = reduce;
    });
    useChannel(channel, (payload, event) => setState((current) => reduceRef.current(current, payload, event)));
    return state;
}
/** The client's connection state (idle, fetching_ticket, connecting, awaiting_welcome, active, backing_off, stopped); re-renders on each change. */
function useConnectionState() {
    const { client } = useFerry();
    const subscribe = (0, react_1.useCallback)((onChange) => {
        const stop = client.on("state", onChange);
        return () => {
            stop();
        };
    }, [client]);
    const snapshot = (0, react_1.useCallback)(() => client.state, [client]);
    return (0, react_1.useSyncExternalStore)(subscribe, snapshot, snapshot);
}
function usePublish(channel) {
    const { client } = useFerry();
    const name = nameOf(channel);
    const toAny = (0, react_1.useCallback)((target, payload, options) => client.publish(target, payload, options), [client]);
    const toOne = (0, react_1.useCallback)((payload, options) => {
        if (name === undefined)
            return Promise.reject(new Error("usePublish(channel) needs a channel"));
        return client.publish(name, payload, options);
    }, [client, name]);
    return channel === undefined ? toAny : toOne;
}
const NOT_READY = { members: [], ready: false };
/**
 * The members of `channel` (`null` watches nothing): the client subscribes to it, reads every
 * member page after each subscribed reply and keeps the list up to date with the channel's
 * presence events (FERRY-PRESENCE-6). The component re-renders after every full read and every
 * join or leave. Components watching one channel share one subscription, with the same delayed
 * release as useChannel, so StrictMode's remount reads nothing twice.
 */
function usePresence(channel, options) {
    const { registry } = useFerry();
    const name = nameOf(channel);
    const [state, setState] = (0, react_1.useState)({ channel: undefined, presence: NOT_READY });
    const infoRef = (0, react_1.useRef)(options?.info);
    const refusedRef = (0, react_1.useRef)(options?.onRefused);
    useIsomorphicLayoutEffect(() => {
        infoRef.current = options?.info;
        refusedRef.current = options?.onRefused;
    });
    (0, react_1.useEffect)(() => {
        if (name === undefined)
            return undefined;
        const put = (presence) => setState({ channel: name, presence });
        return registry.acquirePresence(name, {
            members: (members) => put({ members, ready: true }),
            failed: () => setState((current) => (current.channel === name && current.presence.ready ? { channel: name, presence: { members: current.presence.members, ready: false } } : current)),
            refused: (error) => {
                put(NOT_READY);
                refusedRef.current?.(error);
            },
        }, infoRef.current);
    }, [registry, name]);
    // The state of another channel (before a change of `channel` took effect) is not this one's.
    return state.channel === name && name !== undefined ? state.presence : NOT_READY;
}
