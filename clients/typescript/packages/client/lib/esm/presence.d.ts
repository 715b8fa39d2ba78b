import type { Member, MemberPage, Presence } from "@ferry/protocol";
/**
 * Orders two strings as their UTF-8 bytes, the order of member pages (FERRY-PRESENCE-3). It is
 * the order of code points, which differs from JavaScript's UTF-16 order where a code point above
 * U+FFFF (a surrogate pair) meets one from U+E000 to U+FFFF.
 */
export declare function compareUtf8(a: string, b: string): number;
/** One sync under way: the pages read so far and the presence events since its subscribed reply. */
export interface Sync {
    readonly pages: Map<string, Member>;
    readonly events: Presence[];
}
/** What a member page did to the sync it answers. */
export type PageOutcome = 
/** It was the sync's last page: the list now holds the members. */
"last"
/** More pages follow: ask for the one after the page's `next`. */
 | "more"
/** It answers a sync that is over (restarted, abandoned): nothing changed. */
 | "stale";
/** One channel's members as a client tracks them; see the module comment. */
export declare class MemberList {
    #private;
    /** A subscribed reply arrived: a new sync starts, and the events from now on are kept until its last page. Returns the sync, to match its pages with. */
    restart(): Sync;
    /** Ends the sync under way without a result: its events are dropped, and the list is no longer synced until the next sync ends. */
    abandon(): void;
    /** Whether `sync` is the sync under way. */
    isCurrent(sync: Sync): boolean;
    /** Whether a sync is under way. */
    get isSyncing(): boolean;
    /** Whether a sync ended once (and none was abandoned since): `members` holds the server's members as of it and the events since. */
    get isSynced(): boolean;
    /** Takes a member page of `sync`. */
    page(sync: Sync, page: MemberPage): PageOutcome;
    /** Takes a presence event: kept for the sync under way, or applied to the list; true when the list changed now. */
    presence(event: Presence): boolean;
    /** The members, ordered by user as UTF-8 bytes; the same array until the list changes. */
    members(): readonly Member[];
}
