import type * as T from "./types.js";
/** A channel namespace: the channels its pattern matches carry one payload type. */
export interface Namespace {
    readonly pattern: string;
    readonly payload: string;
    readonly description: string;
}
/** The application's namespaces, in the order they are matched. */
export declare const NAMESPACES: readonly [{
    readonly pattern: "project:*:tasks";
    readonly payload: "TaskProgress";
    readonly description: "Task state and progress of one project.";
}, {
    readonly pattern: "project:*:approvals";
    readonly payload: "ApprovalEvent";
    readonly description: "Approval requests of one project and their outcomes; its members are the people there to decide.";
}, {
    readonly pattern: "agent:*:activity";
    readonly payload: "AgentActivity";
    readonly description: "What one agent is doing, step by step.";
}, {
    readonly pattern: "daemon:*:output";
    readonly payload: "CommandOutput";
    readonly description: "Output of the commands a workstation daemon runs, in order; the daemon holds the channel, and a restarted daemon takes it over.";
}];
/**
 * The payload type of a channel, from its name. Wildcard segments become `${string}`, which
 * TypeScript lets match across ':'; {@link namespaceOf} matches segment by segment at run time.
 */
export type ChannelPayload<C extends string> = C extends `project:${string}:tasks` ? T.TaskProgress : C extends `project:${string}:approvals` ? T.ApprovalEvent : C extends `agent:${string}:activity` ? T.AgentActivity : C extends `daemon:${string}:output` ? T.CommandOutput : T.JsonValue;
/**
 * Whether a channel name matches a pattern: '*' matches exactly one segment, a final '**' one
 * or more remaining segments, anything else itself (FERRY-CHANNEL-3).
 */
export declare function matchesPattern(pattern: string, channel: string): boolean;
/** The namespace a channel belongs to, if any. */
export declare function namespaceOf(channel: string): Namespace | undefined;
