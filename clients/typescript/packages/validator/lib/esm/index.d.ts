/** One way a value breaks its schema: where (a JSON pointer) and what. */
export interface Problem {
    readonly path: string;
    readonly message: string;
}
/** The outcome of parsing a frame: the message, or the problems that refused it. */
export type ParseResult<M> = {
    readonly ok: true;
    readonly value: M;
} | {
    readonly ok: false;
    readonly problems: readonly Problem[];
};
/** A check of one schema: pushes a problem per broken constraint of `value` found at `path`. */
export type Check = (value: unknown, path: string, problems: Problem[]) => void;
/** Counts Unicode code points, as JSON Schema's minLength and maxLength do. */
export declare function codePoints(text: string): number;
/** A string with optional bounds on its length in code points and an optional pattern. */
export declare function string(minLength: number | undefined, maxLength: number | undefined, pattern: RegExp | undefined): Check;
/** A finite number (an integer when `integral`) with optional inclusive bounds. */
export declare function number(minimum: number | undefined, maximum: number | undefined, integral?: boolean): Check;
/** An integer with optional inclusive bounds. */
export declare function integer(minimum: number | undefined, maximum: number | undefined): Check;
/** A boolean. */
export declare const boolean: Check;
/** Exactly `null`. */
export declare const nullValue: Check;
/** Any JSON value (the schema sets no constraint). */
export declare const anyJson: Check;
/** Any JSON object. */
export declare const anyObject: Check;
/** One of the listed values (`enum` and `const`). */
export declare function oneOfValues(values: readonly unknown[]): Check;
/** `null`, or a value that passes `inner`. */
export declare function nullable(inner: Check): Check;
/** An array whose items pass `item`, with optional bounds on its length. */
export declare function array(item: Check, minItems: number | undefined, maxItems: number | undefined): Check;
/** An object with the `required` members present and no member other than those listed. */
export declare function object(required: readonly string[], members: ReadonlyArray<readonly [string, Check]>): Check;
/** A tagged union: the object's `type` member picks the variant whose check applies. */
export declare function tagged(variants: ReadonlyArray<readonly [string, Check]>): Check;
/** Runs a check on a value from its root; empty when the value is valid. */
export declare function run(check: Check, value: unknown): Problem[];
/** Parses one JSON text and checks it; `M` is the type the check proves. */
export declare function parseWith<M>(check: Check, text: string): ParseResult<M>;
