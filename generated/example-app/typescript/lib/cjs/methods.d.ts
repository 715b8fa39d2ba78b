import type * as T from "./types.js";
/** An RPC method: the name a call gives, and the definitions of its params and result. */
export interface Method {
    readonly name: string;
    readonly params: string;
    readonly result: string;
    readonly description: string;
}
/** The application's RPC methods (methods.json). */
export declare const METHODS: readonly [{
    readonly name: "tasks:start";
    readonly params: "StartTask";
    readonly result: "TaskStarted";
    readonly description: "Queues a new task in a project and returns its id.";
}];
/** Each method's params and result types, by method name. */
export interface Methods {
    /** Queues a new task in a project and returns its id. */
    "tasks:start": {
        params: T.StartTask;
        result: T.TaskStarted;
    };
}
/** The name of a method the application declares. */
export type MethodName = keyof Methods;
/** The params a call of method `M` takes. */
export type MethodParams<M extends MethodName> = Methods[M]["params"];
/** The result method `M` returns. */
export type MethodResult<M extends MethodName> = Methods[M]["result"];
