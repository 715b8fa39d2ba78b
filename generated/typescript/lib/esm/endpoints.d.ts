import type * as T from "./types.js";
/** An error status an endpoint may answer with, and the code its ErrorBody carries. */
export interface EndpointError {
    readonly status: number;
    readonly code: T.ErrorCode;
    readonly when: string;
}
/** An HTTP or WebSocket endpoint of a Ferry server. */
export interface Endpoint {
    readonly name: string;
    readonly method: "GET" | "POST";
    readonly path: string;
    readonly auth: "bearer" | "ticket" | "none";
    readonly summary: string;
    readonly successStatus: number;
    readonly responseContentType: string;
    readonly errors: readonly EndpointError[];
    readonly rules: readonly string[];
}
/** Every endpoint, by name. */
export declare const ENDPOINTS: {
    /**
     * Exchange the caller's bearer credential for a single-use WebSocket ticket bound to the caller's identity and permissions.
     */
    readonly issueTicket: {
        readonly name: "issue_ticket";
        readonly method: "POST";
        readonly path: "/v1/tickets";
        readonly auth: "bearer";
        readonly summary: "Exchange the caller's bearer credential for a single-use WebSocket ticket bound to the caller's identity and permissions.";
        readonly successStatus: 201;
        readonly responseContentType: "application/json";
        readonly errors: readonly [{
            readonly status: 401;
            readonly code: "unauthorized";
            readonly when: "The Authorization header is missing or its credential is not valid.";
        }, {
            readonly status: 429;
            readonly code: "rate_limited";
            readonly when: "The caller asks for tickets faster than its token bucket allows; retry_after_ms and the Retry-After header say when to retry.";
        }, {
            readonly status: 503;
            readonly code: "unavailable";
            readonly when: "The server is draining.";
        }];
        readonly rules: readonly ["FERRY-TICKET-1", "FERRY-TICKET-2", "FERRY-RATE-4"];
    };
    /**
     * Open a WebSocket session: `GET /v1/ws?ticket=TICKET` with `Sec-WebSocket-Protocol: ferry.v1`. The first frame is a welcome; a rejected ticket closes the session with 4401 before any other frame.
     */
    readonly connect: {
        readonly name: "connect";
        readonly method: "GET";
        readonly path: "/v1/ws";
        readonly auth: "ticket";
        readonly summary: "Open a WebSocket session: `GET /v1/ws?ticket=TICKET` with `Sec-WebSocket-Protocol: ferry.v1`. The first frame is a welcome; a rejected ticket closes the session with 4401 before any other frame.";
        readonly successStatus: 101;
        readonly responseContentType: "websocket";
        readonly errors: readonly [{
            readonly status: 403;
            readonly code: "forbidden";
            readonly when: "The Origin header is not in the server's allowlist.";
        }, {
            readonly status: 503;
            readonly code: "unavailable";
            readonly when: "The server is draining.";
        }];
        readonly rules: readonly ["FERRY-TRANSPORT-1", "FERRY-TICKET-3", "FERRY-WELCOME-1"];
    };
    /**
     * Publish one event from a backend service; the credential must grant write on the channel.
     */
    readonly publish: {
        readonly name: "publish";
        readonly method: "POST";
        readonly path: "/v1/publish";
        readonly auth: "bearer";
        readonly summary: "Publish one event from a backend service; the credential must grant write on the channel.";
        readonly successStatus: 200;
        readonly responseContentType: "application/json";
        readonly errors: readonly [{
            readonly status: 400;
            readonly code: "bad_request";
            readonly when: "The body is not a valid PublishRequest.";
        }, {
            readonly status: 401;
            readonly code: "unauthorized";
            readonly when: "The credential is missing or not valid.";
        }, {
            readonly status: 403;
            readonly code: "forbidden";
            readonly when: "The credential grants no write on the channel.";
        }, {
            readonly status: 404;
            readonly code: "unknown_channel";
            readonly when: "The channel belongs to no declared namespace.";
        }, {
            readonly status: 413;
            readonly code: "message_too_large";
            readonly when: "The body exceeds the maximum message size.";
        }, {
            readonly status: 422;
            readonly code: "payload_invalid";
            readonly when: "The payload does not match the namespace's payload schema.";
        }, {
            readonly status: 429;
            readonly code: "rate_limited";
            readonly when: "The caller publishes faster than its token bucket allows; retry_after_ms and the Retry-After header say when to retry.";
        }, {
            readonly status: 503;
            readonly code: "unavailable";
            readonly when: "The server is draining, or the node holds as much history as it may even after dropping events older than the resume window.";
        }];
        readonly rules: readonly ["FERRY-PUBLISH-1", "FERRY-DEDUP-1", "FERRY-CHANNEL-4", "FERRY-RATE-4"];
    };
    /**
     * Read a channel's history after a position, for applications that must refetch after an incomplete recovery; the credential must grant read on the channel.
     */
    readonly history: {
        readonly name: "history";
        readonly method: "GET";
        readonly path: "/v1/history";
        readonly auth: "bearer";
        readonly summary: "Read a channel's history after a position, for applications that must refetch after an incomplete recovery; the credential must grant read on the channel.";
        readonly successStatus: 200;
        readonly responseContentType: "application/json";
        readonly errors: readonly [{
            readonly status: 400;
            readonly code: "bad_request";
            readonly when: "The query is not a valid HistoryQuery.";
        }, {
            readonly status: 401;
            readonly code: "unauthorized";
            readonly when: "The credential is missing or not valid.";
        }, {
            readonly status: 403;
            readonly code: "forbidden";
            readonly when: "The credential grants no read on the channel.";
        }, {
            readonly status: 404;
            readonly code: "unknown_channel";
            readonly when: "The channel belongs to no declared namespace.";
        }];
        readonly rules: readonly ["FERRY-RESUME-5"];
    };
    /**
     * Liveness: 200 while the process serves, with status ok, or draining during a graceful shutdown (a draining server is alive: do not restart it). Load balancers ask /v1/ready.
     */
    readonly health: {
        readonly name: "health";
        readonly method: "GET";
        readonly path: "/v1/health";
        readonly auth: "none";
        readonly summary: "Liveness: 200 while the process serves, with status ok, or draining during a graceful shutdown (a draining server is alive: do not restart it). Load balancers ask /v1/ready.";
        readonly successStatus: 200;
        readonly responseContentType: "application/json";
        readonly errors: readonly [];
        readonly rules: readonly ["FERRY-SHUTDOWN-5"];
    };
    /**
     * Readiness, for load balancers: 200 with status ok while the server takes new tickets and sessions, 503 unavailable from the moment it starts draining.
     */
    readonly ready: {
        readonly name: "ready";
        readonly method: "GET";
        readonly path: "/v1/ready";
        readonly auth: "none";
        readonly summary: "Readiness, for load balancers: 200 with status ok while the server takes new tickets and sessions, 503 unavailable from the moment it starts draining.";
        readonly successStatus: 200;
        readonly responseContentType: "application/json";
        readonly errors: readonly [{
            readonly status: 503;
            readonly code: "unavailable";
            readonly when: "The server is draining.";
        }];
        readonly rules: readonly ["FERRY-SHUTDOWN-5"];
    };
    /**
     * Prometheus metrics in the OpenMetrics text format: sessions, subscriptions, messages in and out, replayed events, rejections by error code, closes by close code.
     */
    readonly metrics: {
        readonly name: "metrics";
        readonly method: "GET";
        readonly path: "/metrics";
        readonly auth: "none";
        readonly summary: "Prometheus metrics in the OpenMetrics text format: sessions, subscriptions, messages in and out, replayed events, rejections by error code, closes by close code.";
        readonly successStatus: 200;
        readonly responseContentType: "application/openmetrics-text; version=1.0.0; charset=utf-8";
        readonly errors: readonly [];
        readonly rules: readonly [];
    };
};
/** Every endpoint's method, path and success status, by name: what a client needs to call it, without the descriptions of `ENDPOINTS` (a browser bundle that imports only this leaves them out). */
export declare const ROUTES: {
    readonly issueTicket: {
        readonly method: "POST";
        readonly path: "/v1/tickets";
        readonly successStatus: 201;
    };
    readonly connect: {
        readonly method: "GET";
        readonly path: "/v1/ws";
        readonly successStatus: 101;
    };
    readonly publish: {
        readonly method: "POST";
        readonly path: "/v1/publish";
        readonly successStatus: 200;
    };
    readonly history: {
        readonly method: "GET";
        readonly path: "/v1/history";
        readonly successStatus: 200;
    };
    readonly health: {
        readonly method: "GET";
        readonly path: "/v1/health";
        readonly successStatus: 200;
    };
    readonly ready: {
        readonly method: "GET";
        readonly path: "/v1/ready";
        readonly successStatus: 200;
    };
    readonly metrics: {
        readonly method: "GET";
        readonly path: "/metrics";
        readonly successStatus: 200;
    };
};
/** The request body, query and response body of every endpoint (`undefined` where there is none). */
export interface EndpointTypes {
    issueTicket: {
        request: undefined;
        query: undefined;
        response: T.TicketResponse;
    };
    connect: {
        request: undefined;
        query: undefined;
        response: T.Welcome;
    };
    publish: {
        request: T.PublishRequest;
        query: undefined;
        response: T.PublishResponse;
    };
    history: {
        request: undefined;
        query: T.HistoryQuery;
        response: T.HistoryResponse;
    };
    health: {
        request: undefined;
        query: undefined;
        response: T.HealthResponse;
    };
    ready: {
        request: undefined;
        query: undefined;
        response: T.HealthResponse;
    };
    metrics: {
        request: undefined;
        query: undefined;
        response: undefined;
    };
}
