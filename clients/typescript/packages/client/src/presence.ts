// A client's copy of one channel's members, kept as FERRY-PRESENCE-6 says, the twin of
// crates/protocol's presence::MemberList: after each subscribed reply it restarts, takes every
// member page, and applies on top of them, in order, the presence events that arrived since the
// reply; from then on it applies each event as it comes. Each event states a member's whole
// presence (a join sets the member with one session and its info, a leave removes it), so the
// copy equals the server's members whatever the order in which pages and events crossed.

import type { Member, MemberPage, Presence } from "@ferry/protocol";

/**
 * Orders two strings as their UTF-8 bytes, the order of member pages (FERRY-PRESENCE-3). It is
 * the order of code points, which differs from JavaScript's UTF-16 order where a code point above
 * U+FFFF (a surrogate pair) meets one from U+E000 to U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** A UTF-16 unit moved so that surrogates (code points above U+FFFF) sort after U+E000..U+FFFF. */
function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** One sync under way: the pages read so far and the presence events since its subscribed reply. */
export interface Sync {
  readonly pages: Map<string, Member>;
  readonly events: Presence[];
}

/** What a member page did to the sync it answers. */
export type PageOutcome =
  /** It was the sync's last page: the list now holds the members. */
  | "last"
  /** More pages follow: ask for the one after the page's `next`. */
  | "more"
  /** It answers a sync that is over (restarted, abandoned): nothing changed. */
  | "stale";

/** One channel's members as a client tracks them; see the module comment. */
export class MemberList {
  /** By user, in no order; `#sorted` is the same members in the order of member pages. */
  #members = new Map<string, Member>();
  #sorted: readonly Member[] = [];
  #sync: Sync | undefined;
  #synced = false;

  /** A subscribed reply arrived: a new sync starts, and the events from now on are kept until its last page. Returns the sync, to match its pages with. */
  restart(): Sync {
    this.#sync = { pages: new Map(), events: [] };
    return this.#sync;
  }

  /** Ends the sync under way without a result: its events are dropped, and the list is no longer synced until the next sync ends. */
  abandon(): void {
    this.#sync = undefined;
    this.#synced = false;
  }

  /** Whether `sync` is the sync under way. */
  isCurrent(sync: Sync): boolean {
    return this.#sync === sync;
  }

  /** Whether a sync is under way. */
  get isSyncing(): boolean {
    return this.#sync !== undefined;
  }

  /** Whether a sync ended once (and none was abandoned since): `members` holds the server's members as of it and the events since. */
  get isSynced(): boolean {
    return this.#synced;
  }

  /** Takes a member page of `sync`. */
  page(sync: Sync, page: MemberPage): PageOutcome {
    if (this.#sync !== sync) return "stale";
    for (const member of page.members) sync.pages.set(member.user, member);
    if (page.next !== null) return "more";
    this.#sync = undefined;
    this.#members = sync.pages;
    for (const event of sync.events) apply(this.#members, event);
    this.#sorted = [...this.#members.values()].sort((a, b) => compareUtf8(a.user, b.user));
    this.#synced = true;
    return "last";
  }

  /** Takes a presence event: kept for the sync under way, or applied to the list; true when the list changed now. */
  presence(event: Presence): boolean {
    if (this.#sync !== undefined) {
      this.#sync.events.push(event);
      return false;
    }
    if (!this.#synced || !apply(this.#members, event)) return false;
    this.#sorted = event.change === "join" ? insertSorted(this.#sorted, this.#members.get(event.user)) : this.#sorted.filter((m) => m.user !== event.user);
    return true;
  }

  /** The members, ordered by user as UTF-8 bytes; the same array until the list changes. */
  members(): readonly Member[] {
    return this.#sorted;
  }
}

/**
 * Applies one presence event: a join sets the member with one session and its info, a leave
 * removes it. Returns whether the list changed.
 *
 * A join finds its user absent when the server records it, so a join for a user the list holds
 * already is one the list reflects (a page read after it) and keeps the entry, whose count of
 * sessions is newer.
 */
function apply(members: Map<string, Member>, event: Presence): boolean {
  if (event.change === "leave") return members.delete(event.user);
  if (members.has(event.user)) return false;
  members.set(event.user, event.info === undefined ? { user: event.user, sessions: 1 } : { user: event.user, sessions: 1, info: event.info });
  return true;
}

function insertSorted(sorted: readonly Member[], member: Member | undefined): readonly Member[] {
  if (member === undefined) return sorted;
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    const at = sorted[mid];
    if (at !== undefined && compareUtf8(at.user, member.user) < 0) low = mid + 1;
    else high = mid;
  }
  return [...sorted.slice(0, low), member, ...sorted.slice(low)];
}
