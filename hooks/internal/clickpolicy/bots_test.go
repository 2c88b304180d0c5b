package clickpolicy

import (
	"strings"
	"testing"
)

const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

func TestIsBotHumans(t *testing.T) {
	d := NewBotDetector()
	humans := []string{
		chromeUA,
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0]",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 337.0",
		"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 YaBrowser/24.4 Mobile Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/127.0 \u00e9\u4e2d\u6587\xff",
	}
	for _, ua := range humans {
		if d.IsBot(ua) {
			t.Errorf("IsBot(%q) = true, want false", ua)
		}
	}
}

func TestIsBotBots(t *testing.T) {
	d := NewBotDetector()
	bots := []string{
		"",
		"   ",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
		"Baiduspider+(+http://www.baidu.com/search/spider.htm)",
		"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
		"WhatsApp/2.23.20.0",
		"TelegramBot (like TwitterBot)",
		"Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
		"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
		"Twitterbot/1.0",
		"LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
		"Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
		"python-requests/2.31.0",
		"Python-urllib/3.11",
		"curl/8.5.0",
		"Wget/1.21.4",
		"Go-http-client/1.1",
		"Go-http-client/2.0",
		"okhttp/4.12.0",
		"Java/17.0.2",
		"libwww-perl/6.72",
		"Apache-HttpClient/4.5.14 (Java/17)",
		"axios/1.6.8",
		"node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
		"Scrapy/2.11 (+https://scrapy.org)",
		"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
		"Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
		"Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
		"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b",
		"Mozilla/5.0 (compatible; Google-InspectionTool/1.0)",
		"Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
		"Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
		"Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
		"Site24x7 monitor",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
		"CCBot/2.0 (https://commoncrawl.org/faq/)",
		"got (https://github.com/sindresorhus/got)",
		"MOZILLA/5.0 (COMPATIBLE; GOOGLEBOT/2.1)",
	}
	for _, ua := range bots {
		if !d.IsBot(ua) {
			t.Errorf("IsBot(%q) = false, want true", ua)
		}
	}
}

func TestIsBotExtraMarkers(t *testing.T) {
	base := NewBotDetector()
	d := NewBotDetector("  MyCrawlerThing ", "", "   ", "Acme Fetch/", "Ünïcode")
	for _, ua := range []string{"x mycrawlerthing y", "MYCRAWLERTHING", "acme fetch/1.0", "xx Ünïcode"} {
		if !d.IsBot(ua) {
			t.Errorf("extra: IsBot(%q) = false", ua)
		}
		if ua != "MYCRAWLERTHING" && ua != "x mycrawlerthing y" && base.IsBot(ua) {
			t.Errorf("base detector flags %q", ua)
		}
	}
	// Blank extras must not turn every agent into a bot.
	if d.IsBot(chromeUA) {
		t.Error("blank extra marker matched a browser")
	}
}

// TestIsBotMatchesNaive cross-checks the automaton against a plain lowercase+Contains scan,
// including overlapping markers and failure-link paths (e.g. "spidspider", "curcurl/").
func TestIsBotMatchesNaive(t *testing.T) {
	extra := []string{"abcd", "bce", "cdx", "ana", "nanas"}
	d := NewBotDetector(extra...)
	var markers []string
	for _, m := range append(strings.Split(builtinBotMarkers, "\n"), extra...) {
		if m = strings.TrimSpace(m); m != "" {
			markers = append(markers, strings.ToLower(m))
		}
	}
	naive := func(ua string) bool {
		if strings.TrimSpace(ua) == "" {
			return true
		}
		l := strings.ToLower(ua)
		for _, m := range markers {
			if strings.Contains(l, m) {
				return true
			}
		}
		return false
	}
	inputs := []string{
		"spidspider", "curcurl/", "curl", "cur/l", "abcx", "abce", "xabcdx", "bananas", "banana",
		"abcabcd", "aabce", "bbot", "bo t", "mon1tor", "monitor", "MONITOR", "JAVA/", "java",
		"go-http-clien", "go-http-client", "wget", "wget/", "previe", "pre-view", "preview",
		chromeUA, chromeUA + " bot", "cdcdx", "anana", "nananas",
	}
	for _, in := range inputs {
		if got, want := d.IsBot(in), naive(in); got != want {
			t.Errorf("IsBot(%q) = %v, naive = %v", in, got, want)
		}
	}
	// Every marker is found on its own and embedded in noise.
	for _, m := range markers {
		for _, in := range []string{m, "xx" + m + "yy", strings.ToUpper(m)} {
			if !d.IsBot(in) {
				t.Errorf("marker %q not found in %q", m, in)
			}
		}
	}
}

func TestIsBotNilAndZero(t *testing.T) {
	var nilD *BotDetector
	var zero BotDetector
	for _, d := range []*BotDetector{nilD, &zero} {
		if !d.IsBot("") || d.IsBot("curl/8") {
			t.Error("nil/zero detector should flag only blank agents")
		}
	}
}

func TestIsBotNoAllocs(t *testing.T) {
	d := NewBotDetector()
	if n := testing.AllocsPerRun(100, func() { d.IsBot(chromeUA) }); n != 0 {
		t.Errorf("IsBot allocates %v times", n)
	}
}

func BenchmarkIsBot(b *testing.B) {
	d := NewBotDetector()
	b.ReportAllocs()
	b.SetBytes(int64(len(chromeUA)))
	for b.Loop() {
		if d.IsBot(chromeUA) {
			b.Fatal("chrome flagged")
		}
	}
}

func BenchmarkNewBotDetector(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewBotDetector("extra")
	}
}
