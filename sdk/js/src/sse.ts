/** Server-Sent Events, parsed from text as it arrives: the subset the API sends (`id`,
 * `event`, `data` and `: ping` comments), with any of the three line endings. */

export interface SSEFrame {
  event: string;
  id: string | null;
  data: string;
}

export class SSEParser {
  private buffer = "";
  private event = "message";
  private id: string | null = null;
  private data: string[] = [];

  /** The frames completed by `text`. */
  feed(text: string): SSEFrame[] {
    this.buffer += text;
    const frames: SSEFrame[] = [];
    for (;;) {
      const end = this.buffer.search(/\r\n|\r|\n/);
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      if (end < 0 || (end === this.buffer.length - 1 && this.buffer[end] === "\r")) break;
      const line = this.buffer.slice(0, end);
      const width = this.buffer.startsWith("\r\n", end) ? 2 : 1;
      this.buffer = this.buffer.slice(end + width);
      const frame = this.line(line);
      if (frame) frames.push(frame);
    }
    return frames;
  }

  private line(line: string): SSEFrame | null {
    if (line === "") {
      const frame = this.data.length ? { event: this.event, id: this.id, data: this.data.join("\n") } : null;
      this.event = "message";
      this.data = [];
      return frame;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id") this.id = value;
    return null;
  }
}
