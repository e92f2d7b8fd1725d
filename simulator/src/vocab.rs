//! Word lists and number plans the rule generator draws from.
//!
//! Everything here is data, fixed forever: changing a list changes every generated rule set, so
//! the golden tests in `rulegen` will say so. Append-only edits are still breaking: add a new
//! list instead.

/// China's 12381 early-warning system groups telecom fraud in nine categories (loans,
/// order-brushing, impersonating police/officials, romance investment, fake customer service,
/// impersonating leaders or acquaintances, fake prizes, fake credit repair, other), with weights
/// roughly following the shares the Ministry of Public Security publishes (order-brushing and
/// investment fraud lead).
pub(crate) const CATEGORIES: [(&str, u32); 9] = [
    ("order-brushing", 220),
    ("romance-investment", 170),
    ("loans", 150),
    ("fake-customer-service", 140),
    ("impersonating-police", 100),
    ("fake-credit-repair", 70),
    ("impersonating-acquaintances", 70),
    ("fake-prizes", 40),
    ("other", 40),
];

/// Which side of the call a number rule applies to (most lists block both).
pub(crate) const DIRECTIONS: [(&str, u32); 2] = [("both", 850), ("caller", 150)];

/// Chinese mobile number segments (MIIT allocations, all `1[3-9]x`); the MVNO segments
/// (162/165/167/170/171) get less weight here and are what the prefix rules tag.
pub(crate) const CN_MOBILE_SEGMENTS: [(u64, u32); 48] = [
    (130, 10),
    (131, 10),
    (132, 10),
    (133, 10),
    (134, 8),
    (135, 12),
    (136, 12),
    (137, 12),
    (138, 14),
    (139, 14),
    (145, 3),
    (147, 4),
    (150, 10),
    (151, 10),
    (152, 10),
    (153, 8),
    (155, 8),
    (156, 8),
    (157, 6),
    (158, 10),
    (159, 10),
    (166, 5),
    (172, 3),
    (173, 6),
    (175, 5),
    (176, 6),
    (177, 6),
    (178, 6),
    (180, 8),
    (181, 8),
    (182, 10),
    (183, 10),
    (184, 5),
    (185, 8),
    (186, 10),
    (187, 10),
    (188, 10),
    (189, 10),
    (190, 3),
    (191, 5),
    (192, 3),
    (193, 4),
    (195, 4),
    (196, 4),
    (197, 4),
    (198, 6),
    (199, 6),
    (170, 3),
];

/// The Chinese MVNO ("virtual operator") segments that fraud lists tag by prefix.
pub(crate) const CN_VIRTUAL_SEGMENTS: [u64; 5] = [162, 165, 167, 170, 171];

/// Chinese area codes (without the trunk 0) whose local numbers have 8 digits.
pub(crate) const CN_AREA_CODES: [u64; 16] = [
    10, 20, 21, 22, 23, 24, 25, 27, 28, 29, 371, 531, 571, 591, 755, 769,
];

/// UK mobile ranges: `+44 7[1-5,7-9]` (76 is mostly pagers and personal numbering).
pub(crate) const UK_MOBILE_SECOND: [u64; 8] = [1, 2, 3, 4, 5, 7, 8, 9];

/// NANP area codes of the Caribbean countries behind "one-ring" (wangiri) callbacks.
pub(crate) const NANP_CARIBBEAN: [u64; 14] = [
    268, 284, 345, 441, 473, 649, 664, 758, 767, 784, 809, 829, 868, 876,
];

/// Cambodian mobile prefixes (after +855) and the subscriber length that follows them.
pub(crate) const KH_MOBILE: [(u64, u32); 16] = [
    (10, 6),
    (11, 6),
    (12, 6),
    (15, 6),
    (16, 6),
    (17, 6),
    (31, 7),
    (60, 7),
    (61, 6),
    (66, 7),
    (69, 6),
    (70, 6),
    (77, 6),
    (88, 7),
    (96, 7),
    (97, 7),
];

/// Top-level (and Chinese second-level) public suffixes, weighted like phishing feeds:
/// cheap new gTLDs are over-represented.
pub(crate) const TLDS: [(&str, u32); 32] = [
    ("com", 180),
    ("top", 100),
    ("xyz", 80),
    ("cn", 80),
    ("vip", 60),
    ("shop", 50),
    ("icu", 50),
    ("cc", 50),
    ("net", 50),
    ("info", 40),
    ("online", 30),
    ("site", 30),
    ("club", 30),
    ("com.cn", 30),
    ("live", 20),
    ("fun", 20),
    ("link", 20),
    ("work", 20),
    ("buzz", 20),
    ("store", 20),
    ("app", 20),
    ("wang", 20),
    ("cyou", 20),
    ("sbs", 20),
    ("ltd", 10),
    ("net.cn", 10),
    ("bond", 10),
    ("life", 10),
    ("pw", 10),
    ("asia", 10),
    ("org", 10),
    ("tk", 10),
];

/// Names the word lists below can compose that the Public Suffix List (private section) lists
/// as public suffixes (`cloud`+`app`.`net`). A rule at a public suffix is an error, so the
/// generator never emits these. Found by checking every composable name against the PSL
/// (Debian `publicsuffix` package); a later PSL entry would surface as one rejected rule.
pub(crate) const PSL_COLLISIONS: [&str; 6] = [
    "cloudapp.net",
    "instantcloud.cn",
    "edgeapp.net",
    "web.app",
    "bookonline.app",
    "cn.com",
];

/// English words of phishing host names. Kept free of the single-word keyword seeds
/// (`refund`, `lottery`, …) so negatives built from them stay keyword-free.
pub(crate) const FRAUD_WORDS: [&str; 72] = [
    "secure",
    "pay",
    "payment",
    "update",
    "verify",
    "verification",
    "account",
    "login",
    "signin",
    "service",
    "support",
    "help",
    "center",
    "wallet",
    "bank",
    "card",
    "credit",
    "loan",
    "claim",
    "bonus",
    "gift",
    "reward",
    "online",
    "mobile",
    "app",
    "official",
    "portal",
    "auth",
    "safe",
    "check",
    "confirm",
    "unlock",
    "vip",
    "fast",
    "cash",
    "easy",
    "invest",
    "trade",
    "coin",
    "usdt",
    "mall",
    "shop",
    "express",
    "parcel",
    "delivery",
    "customs",
    "notice",
    "alert",
    "billing",
    "invoice",
    "member",
    "rebate",
    "cashback",
    "task",
    "job",
    "earn",
    "profit",
    "fund",
    "finance",
    "asset",
    "quick",
    "instant",
    "global",
    "cloud",
    "case",
    "court",
    "tax",
    "toll",
    "points",
    "mileage",
    "post",
    "track",
];

/// Pinyin words of Chinese-targeted phishing hosts (支付, 银行, 客服, 退款, 贷款 …).
pub(crate) const PINYIN_WORDS: [&str; 32] = [
    "zhifu",
    "yinhang",
    "kefu",
    "tuikuan",
    "daikuan",
    "jiedai",
    "licai",
    "touzi",
    "gongan",
    "fayuan",
    "jiancha",
    "shebao",
    "yibao",
    "zhengxin",
    "jianzhi",
    "fanli",
    "zhongjiang",
    "kuaidi",
    "lipei",
    "baozhang",
    "anquan",
    "renzheng",
    "shenhe",
    "hongbao",
    "jifen",
    "huiyuan",
    "guanfang",
    "fuwu",
    "zhongxin",
    "etc",
    "dianxin",
    "yidong",
];

/// Brands that phishing imitates (banks, payment, e-commerce, logistics, government services).
pub(crate) const BRANDS: [&str; 36] = [
    "icbc",
    "ccb",
    "boc",
    "abchina",
    "bankcomm",
    "cmbchina",
    "psbc",
    "citicbank",
    "alipay",
    "wechat",
    "weixin",
    "taobao",
    "tmall",
    "jd",
    "pinduoduo",
    "meituan",
    "douyin",
    "unionpay",
    "chinapost",
    "sf-express",
    "chinamobile",
    "12306",
    "paypal",
    "apple",
    "icloud",
    "amazon",
    "microsoft",
    "office365",
    "netflix",
    "dhl",
    "fedex",
    "usps",
    "hsbc",
    "chase",
    "coinbase",
    "binance",
];

/// First labels of deep phishing names.
pub(crate) const SUB_LABELS: [&str; 20] = [
    "login", "www", "m", "h5", "secure", "account", "verify", "auth", "sso", "app", "pay", "wap",
    "my", "service", "online", "id", "portal", "mail", "web", "api",
];

/// Middle labels that make a deep name read like a brand's own name (`icbc-verify.cn.…`).
pub(crate) const FAKE_TLD_LABELS: [&str; 6] = ["cn", "com", "gov", "com-cn", "net", "org"];

/// Words for hosting-looking registrable bases of deep names (`example-cdn.xyz`).
pub(crate) const CDN_WORDS: [&str; 10] = [
    "cdn", "static", "node", "edge", "img", "cache", "assets", "res", "file", "dl",
];

/// Path segments of phishing URLs.
pub(crate) const PATH_SEGMENTS: [&str; 30] = [
    "login",
    "verify",
    "account",
    "secure",
    "update",
    "wp-content",
    "wp-includes",
    "admin",
    "mobile",
    "h5",
    "m",
    "index",
    "pay",
    "user",
    "auth",
    "signin",
    "webscr",
    "cgi-bin",
    "app",
    "home",
    "portal",
    "member",
    "kefu",
    "tuikuan",
    "vip",
    "case",
    "claim",
    "track",
    "bank",
    "static",
];

/// File names of exact phishing URLs (without extension).
pub(crate) const FILE_STEMS: [&str; 14] = [
    "index", "login", "verify", "pay", "submit", "gate", "post", "check", "confirm", "next",
    "step2", "card", "info", "api",
];

/// File extensions of exact phishing URLs.
pub(crate) const FILE_EXTS: [(&str, u32); 4] = [("php", 70), ("html", 15), ("asp", 8), ("jsp", 7)];

/// Regions of Alibaba Cloud OSS and Tencent Cloud COS endpoints (shared hosting abused for
/// phishing pages, so lists target the URL, not the host).
pub(crate) const OSS_REGIONS: [&str; 6] = [
    "hangzhou", "shanghai", "beijing", "shenzhen", "hongkong", "qingdao",
];
pub(crate) const COS_REGIONS: [&str; 5] =
    ["guangzhou", "shanghai", "beijing", "chengdu", "hongkong"];

/// Link shorteners (exact-URL rules only: blocking the host would block everyone).
pub(crate) const SHORTENERS: [&str; 5] = ["t.cn", "bit.ly", "dwz.cn", "suo.im", "url.cn"];

/// Host suffixes of per-tenant hosting (`<tenant>.github.io`).
pub(crate) const TENANT_SUFFIXES: [&str; 6] = [
    "github.io",
    "pages.dev",
    "netlify.app",
    "vercel.app",
    "weebly.com",
    "blogspot.com",
];

/// Harmless words for negative host names.
pub(crate) const BENIGN_WORDS: [&str; 30] = [
    "weather", "family", "garden", "recipe", "travel", "music", "photo", "school", "library",
    "museum", "bakery", "bicycle", "hiking", "coffee", "teahouse", "news", "sports", "movie",
    "book", "river", "mountain", "ocean", "forest", "city", "daily", "home", "kids", "pets", "art",
    "study",
];

/// Fixed Chinese keyword seeds: phrases of the scripts the 12381 categories describe.
pub(crate) const KEYWORDS_ZH: [&str; 44] = [
    "安全账户",
    "刷单返利",
    "冻结",
    "资金冻结",
    "解冻费",
    "涉嫌洗钱",
    "通缉令",
    "逮捕令",
    "配合调查",
    "保证金",
    "征信修复",
    "消除不良记录",
    "注销校园贷",
    "无抵押贷款",
    "低息贷款",
    "放款失败",
    "刷单",
    "点赞返佣",
    "兼职日结",
    "高额回报",
    "稳赚不赔",
    "内幕消息",
    "导师带单",
    "虚拟货币",
    "彩票中奖",
    "领取奖品",
    "恭喜您中奖",
    "快递丢失",
    "理赔退款",
    "关闭百万保障",
    "屏幕共享",
    "我是你领导",
    "换号了",
    "加我微信",
    "医保卡异常",
    "社保卡异常",
    "网贷平台",
    "充值返利",
    "游戏装备交易",
    "裸聊",
    "投资理财群",
    "博彩平台",
    "代办信用卡",
    "解除分期",
];

/// Fixed English keyword seeds (lower case: matching is ASCII case-insensitive).
pub(crate) const KEYWORDS_EN: [&str; 30] = [
    "verify your account",
    "account suspended",
    "account has been locked",
    "unusual activity",
    "refund",
    "tax refund",
    "claim your prize",
    "you have won",
    "lottery",
    "jackpot",
    "gift card",
    "wire transfer",
    "safe account",
    "investment opportunity",
    "guaranteed returns",
    "double your money",
    "crypto giveaway",
    "customs fee",
    "parcel is on hold",
    "delivery failed",
    "update your payment",
    "confirm your identity",
    "loan approved",
    "no credit check",
    "credit repair",
    "work from home",
    "easy money",
    "act now",
    "final notice",
    "arrest warrant",
];

/// Modifiers that turn a seed into more keywords (`紧急` + `安全账户` + `通知`).
pub(crate) const ZH_BEFORE: [&str; 12] = [
    "紧急", "官方", "限时", "最新", "立即", "高额", "免费", "专属", "内部", "快速", "正规", "国家",
];
pub(crate) const ZH_AFTER: [&str; 12] = [
    "通知", "中心", "热线", "专员", "平台", "链接", "群", "客服", "入口", "办理", "名额", "流程",
];
pub(crate) const EN_BEFORE: [&str; 8] = [
    "urgent",
    "official",
    "final",
    "immediate",
    "free",
    "exclusive",
    "secure",
    "instant",
];
pub(crate) const EN_AFTER: [&str; 8] = [
    "now", "today", "notice", "required", "link", "center", "hotline", "pending",
];

/// Message templates that carry one keyword (`{}` is where it goes).
pub(crate) const POS_MESSAGES_ZH: [&str; 6] = [
    "【温馨提示】您好，{}，请于今日内联系处理。",
    "您的账户出现问题：{}，详情回复1。",
    "{}！名额有限，先到先得。",
    "通知：您涉及{}一事，请保持电话畅通。",
    "亲，{}，点击下方链接了解。",
    "王经理：{}，今天之内办好。",
];
pub(crate) const POS_MESSAGES_EN: [&str; 6] = [
    "Dear customer, {}. Reply YES to continue.",
    "NOTICE: {} - respond within 24 hours.",
    "Hi, {}! Details in the link below.",
    "{}. Call us back on the number above.",
    "Your bank: {}, please act quickly.",
    "Congratulations: {}.",
];

/// Everyday messages for negatives (`{n}` a name, `{t}` a time). Checked free of every keyword
/// seed by a test and again when the truth is built.
pub(crate) const NEG_MESSAGES_ZH: [&str; 12] = [
    "{n}，{t}在老地方吃饭，别迟到。",
    "{n}，会议改到明天{t}，地点不变。",
    "妈，我周末{t}到家，{n}也一起来。",
    "{n}，{t}前帮我带一瓶酱油回来。",
    "{n}，孩子的家长会定在{t}，记得去。",
    "{n}，照片{t}已经发到群相册了。",
    "{n}，明天{t}出发去爬山，带好水。",
    "{n}生日快乐！{t}一起切蛋糕。",
    "{n}，电影票买好了，{t}开场。",
    "{n}，图书馆的书{t}之前记得还。",
    "{n}，{t}楼下取一下外卖，谢谢。",
    "{n}，明天{t}的高铁，别忘了带身份证。",
];
pub(crate) const NEG_MESSAGES_EN: [&str; 12] = [
    "See you at the station at {t}, {n}.",
    "Happy birthday {n}! Cake at {t}.",
    "{n}, the meeting has moved to {t} in room 4B.",
    "Thanks for dinner last night, {n}. Same time ({t}) next week?",
    "{n}, can you pick up milk before {t}?",
    "{n}, the kids finish school at {t} today.",
    "Running late, {n}, start without me at {t}.",
    "{n}, table for four booked at {t}.",
    "{n}, did you water the plants? I am back at {t}.",
    "Band practice is at {t} this week, {n}.",
    "{n}, the plumber comes at {t} tomorrow.",
    "{n}, the train leaves at {t}, platform 2.",
];
pub(crate) const NAMES_ZH: [&str; 16] = [
    "小王", "老李", "阿明", "小芳", "张姐", "刘哥", "小陈", "婷婷", "大伟", "阿杰", "小雨", "老周",
    "小林", "阿娟", "老赵", "晓东",
];
pub(crate) const NAMES_EN: [&str; 16] = [
    "Anna", "Ben", "Chloe", "David", "Emma", "Frank", "Grace", "Henry", "Isla", "Jack", "Kate",
    "Liam", "Maya", "Noah", "Olivia", "Sam",
];
pub(crate) const TIMES_ZH: [&str; 12] = [
    "七点",
    "上午十点",
    "下午三点",
    "中午十二点",
    "晚上八点",
    "九点半",
    "六点",
    "下午两点",
    "早上八点",
    "傍晚五点",
    "十一点",
    "四点半",
];
pub(crate) const TIMES_EN: [&str; 12] = [
    "7pm",
    "10am",
    "3pm",
    "noon",
    "8:30",
    "9:15",
    "6pm",
    "half past two",
    "5:45",
    "11am",
    "4pm",
    "7:20",
];
