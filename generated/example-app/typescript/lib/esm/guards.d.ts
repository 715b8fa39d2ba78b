import type * as T from "./types.js";
import { type ParseResult, type Problem } from "@ferry/validator";
export type { Check, ParseResult, Problem } from "@ferry/validator";
/** The problems that keep `value` from being a valid StartTask; empty when it is one. */
export declare function validateStartTask(value: unknown): Problem[];
/** Whether `value` is a valid StartTask, every schema constraint included. */
export declare function isStartTask(value: unknown): value is T.StartTask;
/** The problems that keep `value` from being a valid TaskStarted; empty when it is one. */
export declare function validateTaskStarted(value: unknown): Problem[];
/** Whether `value` is a valid TaskStarted, every schema constraint included. */
export declare function isTaskStarted(value: unknown): value is T.TaskStarted;
/** The problems that keep `value` from being a valid TaskProgress; empty when it is one. */
export declare function validateTaskProgress(value: unknown): Problem[];
/** Whether `value` is a valid TaskProgress, every schema constraint included. */
export declare function isTaskProgress(value: unknown): value is T.TaskProgress;
/** The problems that keep `value` from being a valid ApprovalEvent; empty when it is one. */
export declare function validateApprovalEvent(value: unknown): Problem[];
/** Whether `value` is a valid ApprovalEvent, every schema constraint included. */
export declare function isApprovalEvent(value: unknown): value is T.ApprovalEvent;
/** Parses one text frame as a ApprovalEvent, checking every schema constraint. */
export declare function parseApprovalEvent(text: string): ParseResult<T.ApprovalEvent>;
/** The problems that keep `value` from being a valid ApprovalRequested; empty when it is one. */
export declare function validateApprovalRequested(value: unknown): Problem[];
/** Whether `value` is a valid ApprovalRequested, every schema constraint included. */
export declare function isApprovalRequested(value: unknown): value is T.ApprovalRequested;
/** The problems that keep `value` from being a valid ApprovalResolved; empty when it is one. */
export declare function validateApprovalResolved(value: unknown): Problem[];
/** Whether `value` is a valid ApprovalResolved, every schema constraint included. */
export declare function isApprovalResolved(value: unknown): value is T.ApprovalResolved;
/** The problems that keep `value` from being a valid AgentActivity; empty when it is one. */
export declare function validateAgentActivity(value: unknown): Problem[];
/** Whether `value` is a valid AgentActivity, every schema constraint included. */
export declare function isAgentActivity(value: unknown): value is T.AgentActivity;
/** The problems that keep `value` from being a valid CommandOutput; empty when it is one. */
export declare function validateCommandOutput(value: unknown): Problem[];
/** Whether `value` is a valid CommandOutput, every schema constraint included. */
export declare function isCommandOutput(value: unknown): value is T.CommandOutput;
/** Parses one text frame as a CommandOutput, checking every schema constraint. */
export declare function parseCommandOutput(text: string): ParseResult<T.CommandOutput>;
/** The problems that keep `value` from being a valid OutputChunk; empty when it is one. */
export declare function validateOutputChunk(value: unknown): Problem[];
/** Whether `value` is a valid OutputChunk, every schema constraint included. */
export declare function isOutputChunk(value: unknown): value is T.OutputChunk;
/** The problems that keep `value` from being a valid CommandExited; empty when it is one. */
export declare function validateCommandExited(value: unknown): Problem[];
/** Whether `value` is a valid CommandExited, every schema constraint included. */
export declare function isCommandExited(value: unknown): value is T.CommandExited;
