import type * as T from "./types.js";
import { type ParseResult, type Problem } from "@ferry/validator";
export type { Check, ParseResult, Problem } from "@ferry/validator";
/** The problems that keep `value` from being a valid AdapterCommand; empty when it is one. */
export declare function validateAdapterCommand(value: unknown): Problem[];
/** Whether `value` is a valid AdapterCommand, every schema constraint included. */
export declare function isAdapterCommand(value: unknown): value is T.AdapterCommand;
/** Parses one text frame as a AdapterCommand, checking every schema constraint. */
export declare function parseAdapterCommand(text: string): ParseResult<T.AdapterCommand>;
/** The problems that keep `value` from being a valid AdapterReport; empty when it is one. */
export declare function validateAdapterReport(value: unknown): Problem[];
/** Whether `value` is a valid AdapterReport, every schema constraint included. */
export declare function isAdapterReport(value: unknown): value is T.AdapterReport;
/** Parses one text frame as a AdapterReport, checking every schema constraint. */
export declare function parseAdapterReport(text: string): ParseResult<T.AdapterReport>;
/** The problems that keep `value` from being a valid Connect; empty when it is one. */
export declare function validateConnect(value: unknown): Problem[];
/** Whether `value` is a valid Connect, every schema constraint included. */
export declare function isConnect(value: unknown): value is T.Connect;
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
/** The problems that keep `value` from being a valid Call; empty when it is one. */
export declare function validateCall(value: unknown): Problem[];
/** Whether `value` is a valid Call, every schema constraint included. */
export declare function isCall(value: unknown): value is T.Call;
/** The problems that keep `value` from being a valid Close; empty when it is one. */
export declare function validateClose(value: unknown): Problem[];
/** Whether `value` is a valid Close, every schema constraint included. */
export declare function isClose(value: unknown): value is T.Close;
/** The problems that keep `value` from being a valid Ready; empty when it is one. */
export declare function validateReady(value: unknown): Problem[];
/** Whether `value` is a valid Ready, every schema constraint included. */
export declare function isReady(value: unknown): value is T.Ready;
/** The problems that keep `value` from being a valid Subscribed; empty when it is one. */
export declare function validateSubscribed(value: unknown): Problem[];
/** Whether `value` is a valid Subscribed, every schema constraint included. */
export declare function isSubscribed(value: unknown): value is T.Subscribed;
/** The problems that keep `value` from being a valid Refused; empty when it is one. */
export declare function validateRefused(value: unknown): Problem[];
/** Whether `value` is a valid Refused, every schema constraint included. */
export declare function isRefused(value: unknown): value is T.Refused;
/** The problems that keep `value` from being a valid Delivered; empty when it is one. */
export declare function validateDelivered(value: unknown): Problem[];
/** Whether `value` is a valid Delivered, every schema constraint included. */
export declare function isDelivered(value: unknown): value is T.Delivered;
/** The problems that keep `value` from being a valid Incomplete; empty when it is one. */
export declare function validateIncomplete(value: unknown): Problem[];
/** Whether `value` is a valid Incomplete, every schema constraint included. */
export declare function isIncomplete(value: unknown): value is T.Incomplete;
/** The problems that keep `value` from being a valid Members; empty when it is one. */
export declare function validateMembers(value: unknown): Problem[];
/** Whether `value` is a valid Members, every schema constraint included. */
export declare function isMembers(value: unknown): value is T.Members;
/** The problems that keep `value` from being a valid Published; empty when it is one. */
export declare function validatePublished(value: unknown): Problem[];
/** Whether `value` is a valid Published, every schema constraint included. */
export declare function isPublished(value: unknown): value is T.Published;
/** The problems that keep `value` from being a valid PublishFailed; empty when it is one. */
export declare function validatePublishFailed(value: unknown): Problem[];
/** Whether `value` is a valid PublishFailed, every schema constraint included. */
export declare function isPublishFailed(value: unknown): value is T.PublishFailed;
/** The problems that keep `value` from being a valid Answered; empty when it is one. */
export declare function validateAnswered(value: unknown): Problem[];
/** Whether `value` is a valid Answered, every schema constraint included. */
export declare function isAnswered(value: unknown): value is T.Answered;
/** The problems that keep `value` from being a valid CallFailed; empty when it is one. */
export declare function validateCallFailed(value: unknown): Problem[];
/** Whether `value` is a valid CallFailed, every schema constraint included. */
export declare function isCallFailed(value: unknown): value is T.CallFailed;
/** The problems that keep `value` from being a valid Stopped; empty when it is one. */
export declare function validateStopped(value: unknown): Problem[];
/** Whether `value` is a valid Stopped, every schema constraint included. */
export declare function isStopped(value: unknown): value is T.Stopped;
/** The problems that keep `value` from being a valid Log; empty when it is one. */
export declare function validateLog(value: unknown): Problem[];
/** Whether `value` is a valid Log, every schema constraint included. */
export declare function isLog(value: unknown): value is T.Log;
/** The problems that keep `value` from being a valid HandlerName; empty when it is one. */
export declare function validateHandlerName(value: unknown): Problem[];
/** Whether `value` is a valid HandlerName, every schema constraint included. */
export declare function isHandlerName(value: unknown): value is T.HandlerName;
/** The problems that keep `value` from being a valid Ref; empty when it is one. */
export declare function validateRef(value: unknown): Problem[];
/** Whether `value` is a valid Ref, every schema constraint included. */
export declare function isRef(value: unknown): value is T.Ref;
/** The problems that keep `value` from being a valid Payload; empty when it is one. */
export declare function validatePayload(value: unknown): Problem[];
/** Whether `value` is a valid Payload, every schema constraint included. */
export declare function isPayload(value: unknown): value is T.Payload;
/** The problems that keep `value` from being a valid Info; empty when it is one. */
export declare function validateInfo(value: unknown): Problem[];
/** Whether `value` is a valid Info, every schema constraint included. */
export declare function isInfo(value: unknown): value is T.Info;
/** The problems that keep `value` from being a valid Fence; empty when it is one. */
export declare function validateFence(value: unknown): Problem[];
/** Whether `value` is a valid Fence, every schema constraint included. */
export declare function isFence(value: unknown): value is T.Fence;
/** The problems that keep `value` from being a valid MemberEntry; empty when it is one. */
export declare function validateMemberEntry(value: unknown): Problem[];
/** Whether `value` is a valid MemberEntry, every schema constraint included. */
export declare function isMemberEntry(value: unknown): value is T.MemberEntry;
/** The problems that keep `value` from being a valid Feature; empty when it is one. */
export declare function validateFeature(value: unknown): Problem[];
/** Whether `value` is a valid Feature, every schema constraint included. */
export declare function isFeature(value: unknown): value is T.Feature;
/** The problems that keep `value` from being a valid Channel; empty when it is one. */
export declare function validateChannel(value: unknown): Problem[];
/** Whether `value` is a valid Channel, every schema constraint included. */
export declare function isChannel(value: unknown): value is T.Channel;
/** The problems that keep `value` from being a valid Epoch; empty when it is one. */
export declare function validateEpoch(value: unknown): Problem[];
/** Whether `value` is a valid Epoch, every schema constraint included. */
export declare function isEpoch(value: unknown): value is T.Epoch;
/** The problems that keep `value` from being a valid MessageId; empty when it is one. */
export declare function validateMessageId(value: unknown): Problem[];
/** Whether `value` is a valid MessageId, every schema constraint included. */
export declare function isMessageId(value: unknown): value is T.MessageId;
/** The problems that keep `value` from being a valid Seq; empty when it is one. */
export declare function validateSeq(value: unknown): Problem[];
/** Whether `value` is a valid Seq, every schema constraint included. */
export declare function isSeq(value: unknown): value is T.Seq;
/** The problems that keep `value` from being a valid TextMessage; empty when it is one. */
export declare function validateTextMessage(value: unknown): Problem[];
/** Whether `value` is a valid TextMessage, every schema constraint included. */
export declare function isTextMessage(value: unknown): value is T.TextMessage;
