/** A FIFO with O(1) amortised shift (Array#shift is linear on large arrays). */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head] = undefined as T;
    this.head++;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Puts an item back at the front (a send that failed). */
  unshift(item: T): void {
    if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
  }

  /** Removes every item that matches. */
  removeWhere(pred: (item: T) => boolean): void {
    this.items = this.items.slice(this.head).filter((x) => !pred(x));
    this.head = 0;
  }

  some(pred: (item: T) => boolean): boolean {
    for (let i = this.head; i < this.items.length; i++) if (pred(this.items[i]!)) return true;
    return false;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
