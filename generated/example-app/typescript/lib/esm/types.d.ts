/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
    [key: string]: JsonValue;
};
/**
 * The params of tasks:start: which project gets the task, and its title.
 */
export interface StartTask {
    /**
     * The project, as it appears in its channel names (project:<project>:tasks).
     * @minLength 1
     * @maxLength 64
     * @pattern ^[a-z0-9][a-z0-9_-]{0,63}$
     */
    project: string;
    /**
     * A short human-readable title.
     * @minLength 1
     * @maxLength 512
     */
    title: string;
}
/**
 * The result of tasks:start: the new task's id, under which its progress is published on project:<project>:tasks.
 */
export interface TaskStarted {
    /**
     * The task's identifier within its project.
     * @minLength 1
     * @maxLength 128
     */
    task_id: string;
}
/**
 * A task's state changed or it made progress. Published on project:<project>:tasks.
 */
export interface TaskProgress {
    /**
     * The task's identifier within its project.
     * @minLength 1
     * @maxLength 128
     */
    task_id: string;
    /**
     * A short human-readable title.
     * @maxLength 512
     */
    title?: string;
    /**
     * The task's state.
     */
    status: "queued" | "running" | "blocked" | "succeeded" | "failed" | "cancelled";
    /**
     * Fraction done, from 0 to 1.
     * @minimum 0
     * @maximum 1
     */
    progress: number;
    /**
     * The agent or person working on it; null when unassigned.
     * @maxLength 128
     */
    assignee: string | null;
    /**
     * Why the task failed; present only when status is failed.
     * @maxLength 4096
     */
    error?: string;
}
/**
 * The life of a request for human approval. Published on project:<project>:approvals.
 */
export type ApprovalEvent = ApprovalRequested | ApprovalResolved;
/**
 * An agent asks a person to approve an action before it goes on.
 */
export interface ApprovalRequested {
    /**
     * Always "requested".
     */
    type: "requested";
    /**
     * The approval request's identifier.
     * @minLength 1
     * @maxLength 128
     */
    request_id: string;
    /**
     * The task waiting for the decision.
     * @minLength 1
     * @maxLength 128
     */
    task_id: string;
    /**
     * What the agent wants to do.
     * @minLength 1
     * @maxLength 1024
     */
    action: string;
    /**
     * Why it needs approval.
     * @maxLength 4096
     */
    reason: string;
    /**
     * When the request lapses, in milliseconds since the Unix epoch.
     * @minimum 0
     * @maximum 9007199254740991
     * @integer
     */
    expires_at_ms: number;
}
/**
 * A person approved or rejected a request, or it lapsed.
 */
export interface ApprovalResolved {
    /**
     * Always "resolved".
     */
    type: "resolved";
    /**
     * The approval request's identifier.
     * @minLength 1
     * @maxLength 128
     */
    request_id: string;
    /**
     * The outcome.
     */
    decision: "approved" | "rejected" | "expired";
    /**
     * Who decided; null when the request expired.
     * @maxLength 128
     */
    decided_by: string | null;
    /**
     * An optional note from the person who decided.
     * @maxLength 4096
     */
    comment?: string;
}
/**
 * An agent started, finished or failed a step. Published on agent:<agent>:activity.
 */
export interface AgentActivity {
    /**
     * The agent's name.
     * @minLength 1
     * @maxLength 128
     */
    agent: string;
    /**
     * What the agent is doing, for example run_tests.
     * @minLength 1
     * @maxLength 256
     */
    action: string;
    /**
     * The step's state.
     */
    status: "started" | "completed" | "failed" | "paused";
    /**
     * The task the step belongs to, if any.
     * @minLength 1
     * @maxLength 128
     */
    task_id?: string;
    /**
     * How long the step took; present when it ended.
     * @minimum 0
     * @maximum 9007199254740991
     * @integer
     */
    duration_ms?: number;
}
/**
 * Output of a command a daemon runs, streamed in order. Published on daemon:<workspace>:output.
 */
export type CommandOutput = OutputChunk | CommandExited;
/**
 * A piece of a command's standard output or standard error.
 */
export interface OutputChunk {
    /**
     * Always "chunk".
     */
    type: "chunk";
    /**
     * Identifies one run of a command.
     * @minLength 1
     * @maxLength 128
     */
    run_id: string;
    /**
     * Which stream the data came from.
     */
    stream: "stdout" | "stderr";
    /**
     * The text, as UTF-8 (invalid bytes replaced).
     * @maxLength 65536
     */
    data: string;
}
/**
 * The command ended; no chunk of this run follows.
 */
export interface CommandExited {
    /**
     * Always "exited".
     */
    type: "exited";
    /**
     * Identifies one run of a command.
     * @minLength 1
     * @maxLength 128
     */
    run_id: string;
    /**
     * The exit status; null when a signal ended the process.
     * @minimum -2147483648
     * @maximum 2147483647
     * @integer
     */
    exit_code: number | null;
}
