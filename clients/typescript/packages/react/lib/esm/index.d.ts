export { DEFAULT_RELEASE_DELAY_MS, FerryProvider, useChannel, useChannelState, useConnectionState, useFerryClient, usePublish, type ChannelRef, type FerryProviderProps, type JsonValue, type Published, type PublishOptions, type UseChannelOptions, } from "./hooks.js";
export { ChannelRegistry, registryOf, type ChannelListener, type IncompleteCause, type RefusalError } from "./registry.js";
