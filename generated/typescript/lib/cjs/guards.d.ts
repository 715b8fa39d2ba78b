import type * as T from "./types.js";
import { type ParseResult, type Problem } from "@ferry/validator";
export type { Check, ParseResult, Problem } from "@ferry/validator";
/** The problems that keep `value` from being a valid BackendCall; empty when it is one. */
export declare function validateBackendCall(value: unknown): Problem[];
/** Whether `value` is a valid BackendCall, every schema constraint included. */
export declare function isBackendCall(value: unknown): value is T.BackendCall;
/** Parses one text frame as a BackendCall, checking every schema constraint. */
export declare function parseBackendCall(text: string): ParseResult<T.BackendCall>;
/** The problems that keep `value` from being a valid RpcCall; empty when it is one. */
export declare function validateRpcCall(value: unknown): Problem[];
/** Whether `value` is a valid RpcCall, every schema constraint included. */
export declare function isRpcCall(value: unknown): value is T.RpcCall;
/** The problems that keep `value` from being a valid PublishHookCall; empty when it is one. */
export declare function validatePublishHookCall(value: unknown): Problem[];
/** Whether `value` is a valid PublishHookCall, every schema constraint included. */
export declare function isPublishHookCall(value: unknown): value is T.PublishHookCall;
/** The problems that keep `value` from being a valid SubscribeHookCall; empty when it is one. */
export declare function validateSubscribeHookCall(value: unknown): Problem[];
/** Whether `value` is a valid SubscribeHookCall, every schema constraint included. */
export declare function isSubscribeHookCall(value: unknown): value is T.SubscribeHookCall;
/** The problems that keep `value` from being a valid BackendAnswer; empty when it is one. */
export declare function validateBackendAnswer(value: unknown): Problem[];
/** Whether `value` is a valid BackendAnswer, every schema constraint included. */
export declare function isBackendAnswer(value: unknown): value is T.BackendAnswer;
/** Parses one text frame as a BackendAnswer, checking every schema constraint. */
export declare function parseBackendAnswer(text: string): ParseResult<T.BackendAnswer>;
/** The problems that keep `value` from being a valid RpcReturn; empty when it is one. */
export declare function validateRpcReturn(value: unknown): Problem[];
/** Whether `value` is a valid RpcReturn, every schema constraint included. */
export declare function isRpcReturn(value: unknown): value is T.RpcReturn;
/** The problems that keep `value` from being a valid HookAccept; empty when it is one. */
export declare function validateHookAccept(value: unknown): Problem[];
/** Whether `value` is a valid HookAccept, every schema constraint included. */
export declare function isHookAccept(value: unknown): value is T.HookAccept;
/** The problems that keep `value` from being a valid BackendRefusal; empty when it is one. */
export declare function validateBackendRefusal(value: unknown): Problem[];
/** Whether `value` is a valid BackendRefusal, every schema constraint included. */
export declare function isBackendRefusal(value: unknown): value is T.BackendRefusal;
/** The problems that keep `value` from being a valid ClientMessage; empty when it is one. */
export declare function validateClientMessage(value: unknown): Problem[];
/** Whether `value` is a valid ClientMessage, every schema constraint included. */
export declare function isClientMessage(value: unknown): value is T.ClientMessage;
/** Parses one text frame as a ClientMessage, checking every schema constraint. */
export declare function parseClientMessage(text: string): ParseResult<T.ClientMessage>;
/** The problems that keep `value` from being a valid Subscribe; empty when it is one. */
export declare function validateSubscribe(value: unknown): Problem[];
/** Whether `value` is a valid Subscribe, every schema constraint included. */
export declare function isSubscribe(value: unknown): value is T.Subscribe;
/** The problems that keep `value` from being a valid Unsubscribe; empty when it is one. */
export declare function validateUnsubscribe(value: unknown): Problem[];
/** Whether `value` is a valid Unsubscribe, every schema constraint included. */
export declare function isUnsubscribe(value: unknown): value is T.Unsubscribe;
/** The problems that keep `value` from being a valid Publish; empty when it is one. */
export declare function validatePublish(value: unknown): Problem[];
/** Whether `value` is a valid Publish, every schema constraint included. */
export declare function isPublish(value: unknown): value is T.Publish;
/** The problems that keep `value` from being a valid Rpc; empty when it is one. */
export declare function validateRpc(value: unknown): Problem[];
/** Whether `value` is a valid Rpc, every schema constraint included. */
export declare function isRpc(value: unknown): value is T.Rpc;
/** The problems that keep `value` from being a valid Members; empty when it is one. */
export declare function validateMembers(value: unknown): Problem[];
/** Whether `value` is a valid Members, every schema constraint included. */
export declare function isMembers(value: unknown): value is T.Members;
/** The problems that keep `value` from being a valid Pong; empty when it is one. */
export declare function validatePong(value: unknown): Problem[];
/** Whether `value` is a valid Pong, every schema constraint included. */
export declare function isPong(value: unknown): value is T.Pong;
/** The problems that keep `value` from being a valid ChannelName; empty when it is one. */
export declare function validateChannelName(value: unknown): Problem[];
/** Whether `value` is a valid ChannelName, every schema constraint included. */
export declare function isChannelName(value: unknown): value is T.ChannelName;
/** The problems that keep `value` from being a valid ChannelPattern; empty when it is one. */
export declare function validateChannelPattern(value: unknown): Problem[];
/** Whether `value` is a valid ChannelPattern, every schema constraint included. */
export declare function isChannelPattern(value: unknown): value is T.ChannelPattern;
/** The problems that keep `value` from being a valid Permission; empty when it is one. */
export declare function validatePermission(value: unknown): Problem[];
/** Whether `value` is a valid Permission, every schema constraint included. */
export declare function isPermission(value: unknown): value is T.Permission;
/** The problems that keep `value` from being a valid MethodName; empty when it is one. */
export declare function validateMethodName(value: unknown): Problem[];
/** Whether `value` is a valid MethodName, every schema constraint included. */
export declare function isMethodName(value: unknown): value is T.MethodName;
/** The problems that keep `value` from being a valid RequestId; empty when it is one. */
export declare function validateRequestId(value: unknown): Problem[];
/** Whether `value` is a valid RequestId, every schema constraint included. */
export declare function isRequestId(value: unknown): value is T.RequestId;
/** The problems that keep `value` from being a valid MessageId; empty when it is one. */
export declare function validateMessageId(value: unknown): Problem[];
/** Whether `value` is a valid MessageId, every schema constraint included. */
export declare function isMessageId(value: unknown): value is T.MessageId;
/** The problems that keep `value` from being a valid IdempotencyKey; empty when it is one. */
export declare function validateIdempotencyKey(value: unknown): Problem[];
/** Whether `value` is a valid IdempotencyKey, every schema constraint included. */
export declare function isIdempotencyKey(value: unknown): value is T.IdempotencyKey;
/** The problems that keep `value` from being a valid Epoch; empty when it is one. */
export declare function validateEpoch(value: unknown): Problem[];
/** Whether `value` is a valid Epoch, every schema constraint included. */
export declare function isEpoch(value: unknown): value is T.Epoch;
/** The problems that keep `value` from being a valid Seq; empty when it is one. */
export declare function validateSeq(value: unknown): Problem[];
/** Whether `value` is a valid Seq, every schema constraint included. */
export declare function isSeq(value: unknown): value is T.Seq;
/** The problems that keep `value` from being a valid StreamPosition; empty when it is one. */
export declare function validateStreamPosition(value: unknown): Problem[];
/** Whether `value` is a valid StreamPosition, every schema constraint included. */
export declare function isStreamPosition(value: unknown): value is T.StreamPosition;
/** The problems that keep `value` from being a valid SessionId; empty when it is one. */
export declare function validateSessionId(value: unknown): Problem[];
/** Whether `value` is a valid SessionId, every schema constraint included. */
export declare function isSessionId(value: unknown): value is T.SessionId;
/** The problems that keep `value` from being a valid UserId; empty when it is one. */
export declare function validateUserId(value: unknown): Problem[];
/** Whether `value` is a valid UserId, every schema constraint included. */
export declare function isUserId(value: unknown): value is T.UserId;
/** The problems that keep `value` from being a valid Ticket; empty when it is one. */
export declare function validateTicket(value: unknown): Problem[];
/** Whether `value` is a valid Ticket, every schema constraint included. */
export declare function isTicket(value: unknown): value is T.Ticket;
/** The problems that keep `value` from being a valid Nonce; empty when it is one. */
export declare function validateNonce(value: unknown): Problem[];
/** Whether `value` is a valid Nonce, every schema constraint included. */
export declare function isNonce(value: unknown): value is T.Nonce;
/** The problems that keep `value` from being a valid Payload; empty when it is one. */
export declare function validatePayload(value: unknown): Problem[];
/** Whether `value` is a valid Payload, every schema constraint included. */
export declare function isPayload(value: unknown): value is T.Payload;
/** The problems that keep `value` from being a valid UnixMillis; empty when it is one. */
export declare function validateUnixMillis(value: unknown): Problem[];
/** Whether `value` is a valid UnixMillis, every schema constraint included. */
export declare function isUnixMillis(value: unknown): value is T.UnixMillis;
/** The problems that keep `value` from being a valid ReconnectPolicy; empty when it is one. */
export declare function validateReconnectPolicy(value: unknown): Problem[];
/** Whether `value` is a valid ReconnectPolicy, every schema constraint included. */
export declare function isReconnectPolicy(value: unknown): value is T.ReconnectPolicy;
/** The problems that keep `value` from being a valid HeartbeatPolicy; empty when it is one. */
export declare function validateHeartbeatPolicy(value: unknown): Problem[];
/** Whether `value` is a valid HeartbeatPolicy, every schema constraint included. */
export declare function isHeartbeatPolicy(value: unknown): value is T.HeartbeatPolicy;
/** The problems that keep `value` from being a valid RateLimit; empty when it is one. */
export declare function validateRateLimit(value: unknown): Problem[];
/** Whether `value` is a valid RateLimit, every schema constraint included. */
export declare function isRateLimit(value: unknown): value is T.RateLimit;
/** The problems that keep `value` from being a valid SessionLimits; empty when it is one. */
export declare function validateSessionLimits(value: unknown): Problem[];
/** Whether `value` is a valid SessionLimits, every schema constraint included. */
export declare function isSessionLimits(value: unknown): value is T.SessionLimits;
/** The problems that keep `value` from being a valid ResumePolicy; empty when it is one. */
export declare function validateResumePolicy(value: unknown): Problem[];
/** Whether `value` is a valid ResumePolicy, every schema constraint included. */
export declare function isResumePolicy(value: unknown): value is T.ResumePolicy;
/** The problems that keep `value` from being a valid RpcPolicy; empty when it is one. */
export declare function validateRpcPolicy(value: unknown): Problem[];
/** Whether `value` is a valid RpcPolicy, every schema constraint included. */
export declare function isRpcPolicy(value: unknown): value is T.RpcPolicy;
/** The problems that keep `value` from being a valid PresencePolicy; empty when it is one. */
export declare function validatePresencePolicy(value: unknown): Problem[];
/** Whether `value` is a valid PresencePolicy, every schema constraint included. */
export declare function isPresencePolicy(value: unknown): value is T.PresencePolicy;
/** The problems that keep `value` from being a valid PresenceInfo; empty when it is one. */
export declare function validatePresenceInfo(value: unknown): Problem[];
/** Whether `value` is a valid PresenceInfo, every schema constraint included. */
export declare function isPresenceInfo(value: unknown): value is T.PresenceInfo;
/** The problems that keep `value` from being a valid PresenceChange; empty when it is one. */
export declare function validatePresenceChange(value: unknown): Problem[];
/** Whether `value` is a valid PresenceChange, every schema constraint included. */
export declare function isPresenceChange(value: unknown): value is T.PresenceChange;
/** The problems that keep `value` from being a valid Member; empty when it is one. */
export declare function validateMember(value: unknown): Problem[];
/** Whether `value` is a valid Member, every schema constraint included. */
export declare function isMember(value: unknown): value is T.Member;
/** The problems that keep `value` from being a valid Fence; empty when it is one. */
export declare function validateFence(value: unknown): Problem[];
/** Whether `value` is a valid Fence, every schema constraint included. */
export declare function isFence(value: unknown): value is T.Fence;
/** The problems that keep `value` from being a valid HoldRequest; empty when it is one. */
export declare function validateHoldRequest(value: unknown): Problem[];
/** Whether `value` is a valid HoldRequest, every schema constraint included. */
export declare function isHoldRequest(value: unknown): value is T.HoldRequest;
/** The problems that keep `value` from being a valid HoldGrant; empty when it is one. */
export declare function validateHoldGrant(value: unknown): Problem[];
/** Whether `value` is a valid HoldGrant, every schema constraint included. */
export declare function isHoldGrant(value: unknown): value is T.HoldGrant;
/** The problems that keep `value` from being a valid RecoveryGap; empty when it is one. */
export declare function validateRecoveryGap(value: unknown): Problem[];
/** Whether `value` is a valid RecoveryGap, every schema constraint included. */
export declare function isRecoveryGap(value: unknown): value is T.RecoveryGap;
/** The problems that keep `value` from being a valid ErrorCode; empty when it is one. */
export declare function validateErrorCode(value: unknown): Problem[];
/** Whether `value` is a valid ErrorCode, every schema constraint included. */
export declare function isErrorCode(value: unknown): value is T.ErrorCode;
/** The problems that keep `value` from being a valid ErrorInfo; empty when it is one. */
export declare function validateErrorInfo(value: unknown): Problem[];
/** Whether `value` is a valid ErrorInfo, every schema constraint included. */
export declare function isErrorInfo(value: unknown): value is T.ErrorInfo;
/** The problems that keep `value` from being a valid TicketResponse; empty when it is one. */
export declare function validateTicketResponse(value: unknown): Problem[];
/** Whether `value` is a valid TicketResponse, every schema constraint included. */
export declare function isTicketResponse(value: unknown): value is T.TicketResponse;
/** The problems that keep `value` from being a valid PublishRequest; empty when it is one. */
export declare function validatePublishRequest(value: unknown): Problem[];
/** Whether `value` is a valid PublishRequest, every schema constraint included. */
export declare function isPublishRequest(value: unknown): value is T.PublishRequest;
/** The problems that keep `value` from being a valid PublishResponse; empty when it is one. */
export declare function validatePublishResponse(value: unknown): Problem[];
/** Whether `value` is a valid PublishResponse, every schema constraint included. */
export declare function isPublishResponse(value: unknown): value is T.PublishResponse;
/** The problems that keep `value` from being a valid HistoryQuery; empty when it is one. */
export declare function validateHistoryQuery(value: unknown): Problem[];
/** Whether `value` is a valid HistoryQuery, every schema constraint included. */
export declare function isHistoryQuery(value: unknown): value is T.HistoryQuery;
/** The problems that keep `value` from being a valid StoredEvent; empty when it is one. */
export declare function validateStoredEvent(value: unknown): Problem[];
/** Whether `value` is a valid StoredEvent, every schema constraint included. */
export declare function isStoredEvent(value: unknown): value is T.StoredEvent;
/** The problems that keep `value` from being a valid HistoryResponse; empty when it is one. */
export declare function validateHistoryResponse(value: unknown): Problem[];
/** Whether `value` is a valid HistoryResponse, every schema constraint included. */
export declare function isHistoryResponse(value: unknown): value is T.HistoryResponse;
/** The problems that keep `value` from being a valid HealthResponse; empty when it is one. */
export declare function validateHealthResponse(value: unknown): Problem[];
/** Whether `value` is a valid HealthResponse, every schema constraint included. */
export declare function isHealthResponse(value: unknown): value is T.HealthResponse;
/** The problems that keep `value` from being a valid ErrorBody; empty when it is one. */
export declare function validateErrorBody(value: unknown): Problem[];
/** Whether `value` is a valid ErrorBody, every schema constraint included. */
export declare function isErrorBody(value: unknown): value is T.ErrorBody;
/** The problems that keep `value` from being a valid ServerMessage; empty when it is one. */
export declare function validateServerMessage(value: unknown): Problem[];
/** Whether `value` is a valid ServerMessage, every schema constraint included. */
export declare function isServerMessage(value: unknown): value is T.ServerMessage;
/** Parses one text frame as a ServerMessage, checking every schema constraint. */
export declare function parseServerMessage(text: string): ParseResult<T.ServerMessage>;
/** The problems that keep `value` from being a valid Welcome; empty when it is one. */
export declare function validateWelcome(value: unknown): Problem[];
/** Whether `value` is a valid Welcome, every schema constraint included. */
export declare function isWelcome(value: unknown): value is T.Welcome;
/** The problems that keep `value` from being a valid Recovery; empty when it is one. */
export declare function validateRecovery(value: unknown): Problem[];
/** Whether `value` is a valid Recovery, every schema constraint included. */
export declare function isRecovery(value: unknown): value is T.Recovery;
/** The problems that keep `value` from being a valid Subscribed; empty when it is one. */
export declare function validateSubscribed(value: unknown): Problem[];
/** Whether `value` is a valid Subscribed, every schema constraint included. */
export declare function isSubscribed(value: unknown): value is T.Subscribed;
/** The problems that keep `value` from being a valid Unsubscribed; empty when it is one. */
export declare function validateUnsubscribed(value: unknown): Problem[];
/** Whether `value` is a valid Unsubscribed, every schema constraint included. */
export declare function isUnsubscribed(value: unknown): value is T.Unsubscribed;
/** The problems that keep `value` from being a valid RpcResult; empty when it is one. */
export declare function validateRpcResult(value: unknown): Problem[];
/** Whether `value` is a valid RpcResult, every schema constraint included. */
export declare function isRpcResult(value: unknown): value is T.RpcResult;
/** The problems that keep `value` from being a valid Published; empty when it is one. */
export declare function validatePublished(value: unknown): Problem[];
/** Whether `value` is a valid Published, every schema constraint included. */
export declare function isPublished(value: unknown): value is T.Published;
/** The problems that keep `value` from being a valid EventMessage; empty when it is one. */
export declare function validateEventMessage(value: unknown): Problem[];
/** Whether `value` is a valid EventMessage, every schema constraint included. */
export declare function isEventMessage(value: unknown): value is T.EventMessage;
/** The problems that keep `value` from being a valid MemberPage; empty when it is one. */
export declare function validateMemberPage(value: unknown): Problem[];
/** Whether `value` is a valid MemberPage, every schema constraint included. */
export declare function isMemberPage(value: unknown): value is T.MemberPage;
/** The problems that keep `value` from being a valid Presence; empty when it is one. */
export declare function validatePresence(value: unknown): Problem[];
/** Whether `value` is a valid Presence, every schema constraint included. */
export declare function isPresence(value: unknown): value is T.Presence;
/** The problems that keep `value` from being a valid Ping; empty when it is one. */
export declare function validatePing(value: unknown): Problem[];
/** Whether `value` is a valid Ping, every schema constraint included. */
export declare function isPing(value: unknown): value is T.Ping;
/** The problems that keep `value` from being a valid ErrorMessage; empty when it is one. */
export declare function validateErrorMessage(value: unknown): Problem[];
/** Whether `value` is a valid ErrorMessage, every schema constraint included. */
export declare function isErrorMessage(value: unknown): value is T.ErrorMessage;
/** The problems that keep `value` from being a valid Goodbye; empty when it is one. */
export declare function validateGoodbye(value: unknown): Problem[];
/** Whether `value` is a valid Goodbye, every schema constraint included. */
export declare function isGoodbye(value: unknown): value is T.Goodbye;
