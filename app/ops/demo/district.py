"""The demo district's data: its organisations, what residents need, the projects that answer
them, and the names, phone prefixes and times its people are drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEMO_BOOK = "demo"
DEMO_BOOK_NAME = "示范街道 (demo)"
SEED = 2026


@dataclass(frozen=True)
class OrgSpec:
    """An organisation of the district: the key the seeder knows it by, and its fields."""

    key: str
    kind: str
    name: str
    person_in_charge: str
    categories: tuple[str, ...] = ()
    maker_checker: bool = False


STATION = OrgSpec("station", "social_work_station", "街道社工站", "陈建华")
COMMUNITIES = (
    OrgSpec("c0", "community", "幸福里社区", "张秀兰"),
    OrgSpec("c1", "community", "光明路社区", "李国强"),
    OrgSpec("c2", "community", "和平新村社区", "黄丽娟"),
    OrgSpec("c3", "community", "翠竹园社区", "郑海燕"),
)
SERVICE_ORGS = (
    OrgSpec(
        "youth",
        "volunteer_team",
        "青年志愿服务队",
        "刘洋",
        ("culture", "orphan_care", "community_governance", "emergency", "environment"),
    ),
    OrgSpec(
        "silver",
        "volunteer_team",
        "银龄志愿服务队",
        "王桂英",
        ("elder_care", "community_governance", "health_care", "culture"),
    ),
    OrgSpec(
        "sunshine",
        "social_org",
        "阳光助残服务社",
        "赵敏",
        ("disability_support", "counselling", "health_care"),
    ),
    OrgSpec(
        "green",
        "social_org",
        "绿色家园环保协会",
        "孙志强",
        ("environment", "community_governance", "emergency"),
    ),
    OrgSpec(
        "charity",
        "charity",
        "街道慈善会",
        "周建国",
        ("poverty_relief", "orphan_care", "elder_care", "counselling"),
        maker_checker=True,
    ),
)
KIOSK = OrgSpec("kiosk", "kiosk_site", "爱心超市", "吴春梅")

# (category, target group, description, urgency): what residents need, never who they are.
NEED_TEMPLATES = (
    ("elder_care", "empty_nest_elderly", "独居老人每周需要上门陪伴聊天和代购日用品", "urgent"),
    (
        "elder_care",
        "left_behind_elderly",
        "高龄老人希望有人教会使用智能手机挂号和视频通话",
        "normal",
    ),
    ("elder_care", "empty_nest_elderly", "行动不便的老人需要午间助餐送餐", "high"),
    ("poverty_relief", "subsistence_allowance", "低保家庭冬季缺少棉衣棉被等过冬物资", "high"),
    ("poverty_relief", "extreme_poverty", "特困人员需要定期代领药品和生活物资", "urgent"),
    ("orphan_care", "children_in_difficulty", "困境儿童放学后缺少课业辅导和看护", "high"),
    ("orphan_care", "left_behind_children", "留守儿童周末需要陪伴和兴趣活动", "normal"),
    ("disability_support", "disabled", "行动不便的残疾人需要志愿者陪同就医", "high"),
    ("disability_support", "disabled", "居家康复的残障人士需要陪练和心理支持", "normal"),
    ("community_governance", "other", "老旧小区楼道堆物较多，需要协助排查清理消防隐患", "high"),
    ("community_governance", "other", "垃圾分类投放点早晚高峰需要引导员", "normal"),
    ("culture", "left_behind_women", "留守妇女希望参加手工编织和电商技能培训", "low"),
    ("culture", "left_behind_children", "社区儿童希望有公益书法和绘画课", "low"),
    ("environment", "other", "小区沿河步道垃圾较多，需要定期清理", "normal"),
    ("environment", "other", "楼间绿地缺人养护，杂草丛生", "low"),
    ("emergency", "other", "汛期前需要清点、搬运和补充防汛沙袋", "urgent"),
    ("health_care", "empty_nest_elderly", "老年居民需要定期测量血压血糖", "normal"),
    ("health_care", "disabled", "残疾人家庭需要家庭医生签约咨询", "normal"),
    ("counselling", "empty_nest_elderly", "独居老人情绪低落，需要心理疏导和定期探访", "high"),
    ("counselling", "left_behind_women", "留守妇女需要家庭关系和情绪压力方面的咨询", "normal"),
    ("poverty_relief", "children_in_difficulty", "困难家庭儿童开学需要文具和校服", "high"),
    ("elder_care", "subsistence_allowance", "低保老人希望有人定期上门打扫卫生", "normal"),
)

ProjectKind = Literal["single", "fixed", "shift", "manual"]
# (title, category, place; `{c}` is the project's community), by the way service is recorded.
PROJECT_TEMPLATES: dict[ProjectKind, tuple[tuple[str, str, str], ...]] = {
    "single": (
        ("陪伴空巢老人聊天读报", "elder_care", "{c}老年活动室"),
        ("老年人智能手机教学", "elder_care", "{c}党群服务中心"),
        ("困境儿童课业辅导", "orphan_care", "{c}四点半课堂"),
        ("留守儿童周末陪伴", "orphan_care", "{c}儿童之家"),
        ("助残康复陪练", "disability_support", "{c}康复驿站"),
        ("垃圾分类宣传引导", "community_governance", "{c}垃圾分类投放点"),
        ("楼道消防隐患排查", "community_governance", "{c}各楼栋"),
        ("社区读书会", "culture", "{c}图书室"),
        ("少儿书法公益课", "culture", "{c}党群服务中心"),
        ("旧衣回收分拣", "environment", "{c}可回收物分拣点"),
        ("防汛物资清点搬运", "emergency", "街道应急物资仓库"),
        ("独居老人心理疏导探访", "counselling", "{c}心理咨询室"),
        ("爱心超市物资整理", "poverty_relief", "爱心超市"),
    ),
    "fixed": (
        ("义诊量血压测血糖", "health_care", "{c}卫生服务站"),
        ("助老义剪", "elder_care", "{c}老年活动室"),
        ("消防安全演练协助", "emergency", "{c}中心广场"),
    ),
    "shift": (
        ("爱心超市值班", "poverty_relief", "爱心超市"),
        ("垃圾分类早晚高峰值守", "community_governance", "{c}垃圾分类投放点"),
        ("社区卫生服务站导诊", "health_care", "{c}卫生服务站"),
        ("心理援助热线值守", "counselling", "街道社工站"),
    ),
    "manual": (
        ("沿河步道清洁行动", "environment", "{c}沿河步道"),
        ("困难家庭入户走访", "poverty_relief", "{c}辖区"),
        ("冬衣募集与分发", "poverty_relief", "{c}党群服务中心"),
        ("楼间绿地认养养护", "environment", "{c}楼间绿地"),
        ("陪同残障人士就医", "disability_support", "街道社区卫生服务中心"),
    ),
}
# Single activities (start and end, local time).
SLOTS = (
    ((8, 30), (11, 30)),
    ((9, 0), (11, 0)),
    ((9, 0), (12, 0)),
    ((14, 0), (16, 30)),
    ((14, 30), (17, 0)),
    ((15, 0), (17, 0)),
    ((19, 0), (21, 0)),
)
SHIFT_STARTS = ((8, 30), (9, 0), (13, 30), (14, 0), (16, 0))
REJECT_REASONS = (
    "签到后未实际参与服务，经项目负责人核实不予认定",
    "与现场纸质签到表不符，请核实后重新录入",
    "代他人签到签退，不予认定",
    "服务时段与活动安排不符，经核实不予认定",
)


def _words(spaced: str) -> tuple[str, ...]:
    return tuple(spaced.split())


SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
)
GIVEN_NAMES = _words(
    "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 霞 平 刚 秀英 桂英 秀兰 玉兰 建国 建华 "
    "志强 宇 浩然 欣怡 子涵 梓轩 雨桐 晨阳 思远 佳琪 慧 婷 晓东 海燕 文博 秀珍 淑芬 凤英 玉梅 "
    "建军 丽娟 春梅 国强 红梅 德明 淑华 振华 家豪 一鸣 梦瑶 嘉怡 俊杰 雪 鑫 亮 斌 颖 琳 倩"
)
MOBILE_PREFIXES = _words(
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 173 175 "
    "176 177 178 180 181 182 183 184 185 186 187 188 189 191 198 199"
)
