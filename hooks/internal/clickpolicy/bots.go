package clickpolicy

import "strings"

// builtinBotMarkers are lowercase substrings of user agents sent by crawlers, link-preview
// fetchers, headless browsers, monitoring services and HTTP libraries: clicks from them are not
// human visits and must not count towards an affiliate's stats. It is a constant string (split
// by line in NewBotDetector; markers may contain spaces) because the package keeps no mutable globals.
const builtinBotMarkers = `
bot
crawl
spider
slurp
archiver
facebookexternalhit
facebookcatalog
meta-externalagent
meta-externalfetcher
whatsapp
telegrambot
discordbot
slackbot
slack-imgproxy
twitterbot
linkedinbot
redditbot
embedly
preview
vkshare
skypeuripreview
iframely
headless
phantomjs
slimerjs
puppeteer
playwright
selenium
webdriver
python-requests
python-urllib
python-httpx
aiohttp
httpx
curl/
wget/
go-http-client
okhttp
java/
libwww-perl
lwp::
httpclient
axios/
node-fetch
undici
got (
guzzle
ruby
dart:io
httpie/
postmanruntime
insomnia
scrapy
ahrefs
semrush
mj12bot
dotbot
bingpreview
google-inspectiontool
googleother
mediapartners-google
adsbot-google
apis-google
feedfetcher
google-read-aloud
chatgpt-user
anthropic-ai
claude-web
perplexity
cohere-ai
ccbot
bytespider
baiduspider
qwantify
ia_archiver
lighthouse
pagespeed
gtmetrix
pingdom
uptimerobot
statuscake
site24x7
newrelic
datadog
checkly
monitor
validator
feedly
feedburner
netcraft
zgrab
masscan
nmap
nikto
sqlmap
`

// BotDetector classifies user agents as automated. It is built once (NewBotDetector) and then
// read-only, so one instance can be shared by all request goroutines without locking. Matching
// runs an Aho–Corasick automaton over ASCII-case-folded bytes: one table lookup per user-agent
// byte, no allocation, independent of the number of markers.
type BotDetector struct {
	class  [256]uint8 // byte -> input class; 0 = byte used by no marker; ASCII case folded
	stride int        // number of classes (row width of next)
	next   []int32    // DFA transitions next[state*stride+class]; -1 = a marker was completed
}

// NewBotDetector builds a detector for the built-in markers plus extra ones (e.g. from program
// settings), so operators can block a new crawler without a release. Markers are substrings
// compared ASCII-case-insensitively; blank extras are ignored (they would match everything).
func NewBotDetector(extra ...string) *BotDetector {
	var markers []string
	for _, list := range [][]string{strings.Split(builtinBotMarkers, "\n"), extra} {
		for _, m := range list {
			if m = strings.TrimSpace(m); m != "" {
				markers = append(markers, m)
			}
		}
	}

	d := &BotDetector{}
	var accept []bool // state completes a marker (or has one as a suffix, after the BFS)
	nclass := 1
	for _, m := range markers {
		for i := 0; i < len(m); i++ {
			c := lowerASCII(m[i])
			if d.class[c] == 0 { // at most 256-26 classes: no uint8 overflow
				d.class[c] = uint8(nclass)
				if c >= 'a' && c <= 'z' {
					d.class[c-'a'+'A'] = uint8(nclass)
				}
				nclass++
			}
		}
	}
	d.stride = nclass

	// Trie with -1 for missing edges.
	newState := func() int32 {
		s := int32(len(accept))
		for i := 0; i < nclass; i++ {
			d.next = append(d.next, -1)
		}
		accept = append(accept, false)
		return s
	}
	newState() // root
	for _, m := range markers {
		s := int32(0)
		for i := 0; i < len(m); i++ {
			c := int32(d.class[m[i]])
			t := d.next[s*int32(nclass)+c]
			if t < 0 {
				t = newState()
				d.next[s*int32(nclass)+c] = t
			}
			s = t
		}
		accept[s] = true
	}

	// Breadth-first: failure links turn the trie into a complete DFA.
	fail := make([]int32, len(accept))
	queue := make([]int32, 0, len(accept))
	for c := 0; c < nclass; c++ {
		if t := d.next[c]; t < 0 {
			d.next[c] = 0
		} else {
			fail[t] = 0
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		accept[s] = accept[s] || accept[fail[s]]
		for c := int32(0); c < int32(nclass); c++ {
			i := s*int32(nclass) + c
			f := d.next[fail[s]*int32(nclass)+c]
			if t := d.next[i]; t < 0 {
				d.next[i] = f
			} else {
				fail[t] = f
				queue = append(queue, t)
			}
		}
	}
	// Matching stops at the first completed marker, so fold "enters an accepting state" into
	// the transition itself: one load per input byte instead of two.
	for i, t := range d.next {
		if accept[t] {
			d.next[i] = -1
		}
	}
	return d
}

// IsBot reports whether userAgent looks automated: it contains a known marker, or it is empty
// or blank (real browsers always send one). A nil or zero detector only flags blank agents.
func (d *BotDetector) IsBot(userAgent string) bool {
	if strings.TrimSpace(userAgent) == "" {
		return true
	}
	if d == nil || d.stride == 0 {
		return false
	}
	next, stride := d.next, d.stride
	s := 0
	for i := 0; i < len(userAgent); i++ {
		t := next[s*stride+int(d.class[userAgent[i]])]
		if t < 0 {
			return true
		}
		s = int(t)
	}
	return false
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
