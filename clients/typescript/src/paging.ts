// Paged queries as one sequence: each page asked for after the previous one's cursor.

/** One page: its items, and where the next page starts (`null`: this was the last). */
export interface Page<T> {
  items: readonly T[];
  next: number | null;
}

/** Every item of every page from `after` on, asking for a page only when the previous one is used up. */
export async function* paginate<T>(after: number, page: (after: number) => Promise<Page<T>>): AsyncGenerator<T, void, undefined> {
  for (let cursor: number | null = after; cursor !== null;) {
    const { items, next } = await page(cursor);
    yield* items;
    cursor = next !== null && next > cursor ? next : null;
  }
}
