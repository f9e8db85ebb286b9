// Deterministic generator of realistic XMPP traffic, shared by the XML parser tests and the
// parser benchmark so both exercise the same mix of stanzas, escapes and namespaces.

/** A seeded pseudo-random source: returns floats in [0, 1), the same sequence for a seed. */
export type Random = () => number;

/** Creates a seeded PRNG (mulberry32), so corpora and chunkings are reproducible. */
export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  return function next(): number {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random integer in [min, max]. */
export function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

const USERS = [
  "juliet",
  "romeo",
  "benvolio",
  "mercutio",
  "nurse",
  "tybalt",
  "ñandú",
  "用户",
  "ваня",
];
const DOMAINS = ["capulet.lit", "montague.lit", "im.example.com", "chat.example.org"];
const RESOURCES = ["balcony", "orchard", "Gajim.x7Ks", "Conversations.q2Lm", "📱phone", "desk"];
const WORDS = [
  "hello",
  "wherefore",
  "art",
  "thou",
  "Tom & Jerry",
  "<3",
  "5 > 3",
  "2 < 4",
  '"quoted"',
  "it's",
  "a]]>b",
  "Où est la bibliothèque ?",
  "你好，世界！",
  "こんにちは",
  "Привет, мир",
  "مرحبا بالعالم",
  "👍🏽🎉😀",
  "👨‍👩‍👧",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "naïve café",
  "x=1;y=2",
  "50%",
  "#hashtag",
  "https://example.com/?a=1&b=2",
];
const GROUPS = ["Friends", "Family", "Work & Play", "Montagues", "同僚"];
const FEATURES = [
  "http://jabber.org/protocol/caps",
  "http://jabber.org/protocol/disco#info",
  "http://jabber.org/protocol/disco#items",
  "urn:xmpp:ping",
  "urn:xmpp:receipts",
  "urn:xmpp:mam:2",
  "urn:xmpp:carbons:2",
  "http://jabber.org/protocol/chatstates",
  "jabber:iq:version",
  "urn:xmpp:time",
];

function jid(random: Random, withResource: boolean): string {
  const bare = pick(random, USERS) + "@" + pick(random, DOMAINS);
  return withResource ? bare + "/" + pick(random, RESOURCES) : bare;
}

function id(random: Random): string {
  return Math.floor(random() * 0xffffffff).toString(36) + "-" +
    Math.floor(random() * 0xffff).toString(16);
}

/** Escapes text the way varied real clients do: sometimes with character references. */
function text(random: Random, value: string): string {
  let out = "";
  for (const ch of value) {
    const cp = ch.codePointAt(0)!;
    if (ch === "&") out += "&amp;";
    else if (ch === "<") out += "&lt;";
    else if (ch === ">") out += out.endsWith("]]") || random() < 0.5 ? "&gt;" : ">";
    else if (ch === '"' && random() < 0.3) out += "&quot;";
    else if (ch === "'" && random() < 0.3) out += "&apos;";
    else if (cp > 0x7f && random() < 0.05) {
      out += random() < 0.5 ? `&#${cp};` : `&#x${cp.toString(16)};`;
    } else out += ch;
  }
  return out;
}

/** Writes ` name='value'` with a random quote style and the escapes it needs. */
function attr(random: Random, name: string, value: string): string {
  const quote = random() < 0.75 ? "'" : '"';
  let out = "";
  for (const ch of value) {
    if (ch === "&") out += "&amp;";
    else if (ch === "<") out += "&lt;";
    else if (ch === quote) out += quote === "'" ? "&apos;" : "&quot;";
    else if (ch === ">" && random() < 0.5) out += "&gt;";
    else out += ch;
  }
  const eq = random() < 0.05 ? " = " : "=";
  return " " + name + eq + quote + out + quote;
}

function sentence(random: Random, min: number, max: number): string {
  const count = randomInt(random, min, max);
  const words: string[] = [];
  for (let i = 0; i < count; i++) words.push(pick(random, WORDS));
  return words.join(" ");
}

function stamp(random: Random): string {
  const day = randomInt(random, 1, 28).toString().padStart(2, "0");
  const hour = randomInt(random, 0, 23).toString().padStart(2, "0");
  return `2024-03-${day}T${hour}:15:42.123Z`;
}

function chatMessage(random: Random): string {
  let s = "<message" + attr(random, "from", jid(random, true)) +
    attr(random, "to", jid(random, random() < 0.5)) + attr(random, "type", "chat") +
    attr(random, "id", id(random));
  if (random() < 0.3) s += attr(random, "xml:lang", pick(random, ["en", "fr", "zh-Hans", "ru"]));
  s += ">";
  const long = random() < 0.05;
  const body = long ? sentence(random, 80, 300) : sentence(random, 1, 14);
  if (random() < 0.03) {
    s += "<body><![CDATA[if (a < b && c > d) { return ']]]]><![CDATA[>'; }]]></body>";
  } else if (random() < 0.02) {
    s += "<body>line one\r\nline two\rline three</body>";
  } else {
    s += "<body>" + text(random, body) + "</body>";
  }
  if (random() < 0.5) s += "<active xmlns='http://jabber.org/protocol/chatstates'/>";
  if (random() < 0.4) s += "<request xmlns='urn:xmpp:receipts'/>";
  if (random() < 0.3) s += "<markable xmlns='urn:xmpp:chat-markers:0'/>";
  if (random() < 0.5) {
    s += "<origin-id xmlns='urn:xmpp:sid:0'" + attr(random, "id", id(random)) + "/>";
  }
  if (random() < 0.3) s += "<thread>" + id(random) + "</thread>";
  return s + "</message>";
}

function groupchatMessage(random: Random): string {
  const room = "room" + randomInt(random, 1, 9) + "@conference.capulet.lit";
  return "<message" + attr(random, "from", room + "/" + pick(random, USERS)) +
    attr(random, "to", jid(random, true)) + attr(random, "type", "groupchat") +
    attr(random, "id", id(random)) + ">" +
    "<body>" + text(random, sentence(random, 2, 20)) + "</body>" +
    "<delay xmlns='urn:xmpp:delay'" + attr(random, "from", room) +
    attr(random, "stamp", stamp(random)) + "/>" +
    "<stanza-id xmlns='urn:xmpp:sid:0'" + attr(random, "by", room) +
    attr(random, "id", id(random)) + "/>" +
    "<x xmlns='http://jabber.org/protocol/muc#user'><item" +
    attr(random, "affiliation", pick(random, ["member", "owner", "none"])) +
    attr(random, "role", pick(random, ["participant", "moderator"])) +
    attr(random, "jid", jid(random, true)) + "/></x></message>";
}

function presence(random: Random): string {
  let s = "<presence" + attr(random, "from", jid(random, true));
  if (random() < 0.3) s += attr(random, "to", jid(random, false));
  if (random() < 0.1) s += attr(random, "type", "unavailable");
  s += ">";
  if (random() < 0.5) s += "<show>" + pick(random, ["away", "chat", "dnd", "xa"]) + "</show>";
  if (random() < 0.5) s += "<status>" + text(random, sentence(random, 1, 8)) + "</status>";
  s += "<priority>" + randomInt(random, -1, 50) + "</priority>";
  s += "<c xmlns='http://jabber.org/protocol/caps'" + attr(random, "hash", "sha-1") +
    attr(random, "node", "https://gajim.org") +
    attr(random, "ver", id(random) + "+/=" + id(random)) + "/>";
  if (random() < 0.5) {
    s += "<x xmlns='vcard-temp:x:update'><photo>" +
      "01b87fcd030b72895ff8e88db57ec525450f000d".slice(0, randomInt(random, 0, 40)) +
      "</photo></x>";
  }
  return s + "</presence>";
}

function rosterResult(random: Random): string {
  let s = "<iq" + attr(random, "to", jid(random, true)) + attr(random, "type", "result") +
    attr(random, "id", id(random)) + "><query xmlns='jabber:iq:roster'" +
    attr(random, "ver", "ver" + randomInt(random, 1, 999)) + ">";
  const items = randomInt(random, 1, 12);
  for (let i = 0; i < items; i++) {
    s += "<item" + attr(random, "jid", jid(random, false)) +
      attr(random, "name", pick(random, USERS) + " " + pick(random, ["M.", "C.", "🌹"])) +
      attr(random, "subscription", pick(random, ["both", "to", "from", "none"]));
    if (random() < 0.2) s += attr(random, "ask", "subscribe");
    if (random() < 0.6) s += "><group>" + text(random, pick(random, GROUPS)) + "</group></item>";
    else s += "/>";
  }
  return s + "</query></iq>";
}

function discoInfo(random: Random, pretty: boolean): string {
  const nl = pretty ? "\n  " : "";
  let s = "<iq" + attr(random, "from", pick(random, DOMAINS)) +
    attr(random, "to", jid(random, true)) + attr(random, "type", "result") +
    attr(random, "id", id(random)) + ">" + nl +
    "<query xmlns='http://jabber.org/protocol/disco#info'>" + nl +
    "<identity" + attr(random, "category", "server") + attr(random, "type", "im") +
    attr(random, "name", "Lilt") + "/>" + nl;
  const count = randomInt(random, 2, FEATURES.length);
  for (let i = 0; i < count; i++) s += "<feature" + attr(random, "var", FEATURES[i]) + "/>" + nl;
  // A data form written with a prefix instead of a default namespace declaration.
  s += "<df:x xmlns:df='jabber:x:data' type='result'>" +
    "<df:field var='FORM_TYPE' type='hidden'><df:value>http://jabber.org/network/serverinfo" +
    "</df:value></df:field><df:field var='abuse-addresses'><df:value>mailto:abuse@" +
    pick(random, DOMAINS) + "</df:value></df:field></df:x>" + nl;
  return s + "</query>" + (pretty ? "\n" : "") + "</iq>";
}

function pubsubEvent(random: Random): string {
  return "<message" + attr(random, "from", jid(random, false)) +
    attr(random, "to", jid(random, true)) + attr(random, "type", "headline") +
    attr(random, "id", id(random)) + ">\n" +
    "  <event xmlns='http://jabber.org/protocol/pubsub#event'>\n" +
    "    <items node='urn:xmpp:microblog:0'>\n" +
    "      <item" + attr(random, "id", id(random)) + ">\n" +
    "        <entry xmlns='http://www.w3.org/2005/Atom' xmlns:thr='http://purl.org/syndication/thread/1.0'>\n" +
    "          <title type='text'>" + text(random, sentence(random, 2, 10)) + "</title>\n" +
    "          <published>" + stamp(random) + "</published>\n" +
    "          <thr:in-reply-to ref='tag:capulet.lit,2024:entry-32397' thr:type='text/html'/>\n" +
    "          <link rel='alternate' type='text/html' href='http://montague.lit/romeo/posts/1'/>\n" +
    "        </entry>\n      </item>\n    </items>\n  </event>\n</message>";
}

function xhtmlMessage(random: Random): string {
  const words = sentence(random, 2, 6);
  return "<message" + attr(random, "to", jid(random, true)) + attr(random, "type", "chat") + ">" +
    "<body>" + text(random, words) + "</body>" +
    "<html xmlns='http://jabber.org/protocol/xhtml-im'>" +
    "<body xmlns='http://www.w3.org/1999/xhtml'><p" +
    attr(random, "style", "font-weight:bold;\tcolor:\n#c00") + ">" + text(random, words) +
    " <em>" + text(random, pick(random, WORDS)) + "</em>!<br/>ok</p></body></html></message>";
}

function extensionIq(random: Random): string {
  return "<iq" + attr(random, "type", "set") + attr(random, "id", id(random)) + ">" +
    "<query xmlns='urn:example:ext' xmlns:ext='urn:example:ext:attrs'" +
    attr(random, "ext:flag", "true") + attr(random, "ext:level", String(randomInt(random, 0, 9))) +
    attr(random, "xml:lang", "en") + ">" +
    "<plain xmlns=''>no namespace here</plain>" +
    "<ext:nested><deep><deeper><deepest" + attr(random, "n", "1") + "/></deeper></deep>" +
    "</ext:nested></query></iq>";
}

function ping(random: Random): string {
  return "<iq" + attr(random, "from", jid(random, true)) +
    attr(random, "to", pick(random, DOMAINS)) +
    attr(random, "id", id(random)) + attr(random, "type", "get") +
    "><ping xmlns='urn:xmpp:ping'/></iq>";
}

function smAck(random: Random): string {
  return random() < 0.5
    ? "<r xmlns='urn:xmpp:sm:3'/>"
    : "<a xmlns='urn:xmpp:sm:3'" + attr(random, "h", String(randomInt(random, 0, 99999))) + "/>";
}

/** One random stanza (or stream-level element) as XML text. */
export function generateStanza(random: Random): string {
  const r = random();
  if (r < 0.34) return chatMessage(random);
  if (r < 0.44) return groupchatMessage(random);
  if (r < 0.64) return presence(random);
  if (r < 0.70) return rosterResult(random);
  if (r < 0.75) return discoInfo(random, random() < 0.5);
  if (r < 0.79) return pubsubEvent(random);
  if (r < 0.83) return xhtmlMessage(random);
  if (r < 0.87) return extensionIq(random);
  if (r < 0.95) return ping(random);
  return smAck(random);
}

/** `count` stanzas generated from `seed`, each a standalone XML string. */
export function generateStanzas(seed: number, count: number): string[] {
  const random = createRandom(seed);
  const stanzas: string[] = [];
  for (let i = 0; i < count; i++) stanzas.push(generateStanza(random));
  return stanzas;
}

/** Options for {@link generateCorpus}. */
export interface CorpusOptions {
  /** PRNG seed; the same seed gives the same text. */
  seed?: number;
  /** Number of stanzas. */
  stanzas?: number;
}

/** Stanzas joined the way they arrive on a stream, with occasional whitespace keepalives. */
export function generateCorpus(options: CorpusOptions = {}): string {
  const random = createRandom(options.seed ?? 1);
  const count = options.stanzas ?? 500;
  let out = "";
  for (let i = 0; i < count; i++) {
    out += generateStanza(random);
    const gap = random();
    if (gap < 0.1) out += "\n";
    else if (gap < 0.13) out += " ";
  }
  return out;
}

/** About `megabytes` MiB (UTF-8) of stanzas, without the stream header. */
export function buildCorpus(megabytes: number, seed = 1): string {
  const target = megabytes * 1024 * 1024;
  const random = createRandom(seed);
  const encoder = new TextEncoder();
  const parts: string[] = [];
  let bytes = 0;
  while (bytes < target) {
    const stanza = generateStanza(random) + (random() < 0.1 ? "\n" : "");
    parts.push(stanza);
    bytes += encoder.encode(stanza).length;
  }
  return parts.join("");
}

/** A client-to-server stream header, optionally preceded by an XML declaration. */
export function streamHeader(withDeclaration = true): string {
  return (withDeclaration ? "<?xml version='1.0' encoding='UTF-8'?>\n" : "") +
    "<stream:stream from='juliet@im.example.com' to='im.example.com' version='1.0' " +
    "xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
}

/** The end of a stream. */
export const STREAM_FOOTER = "</stream:stream>";
