"""The printable service proof (志愿服务记录证明): an A4 page in Chinese, every value escaped,
no external asset, with a QR code of the proof's verify URL (docs/service-proof.md)."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import segno

from app.volunteering.figures import hours
from app.volunteering.proofs import StoredProof

EVIDENCE_ZH = {"checkin": "信用时", "manual": "荣誉时"}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _zh_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _period_zh(period: Mapping[str, Any]) -> str:
    start, end = period.get("from"), period.get("to")
    if start and end:
        return f"{start} 至 {end}"
    if start:
        return f"{start} 起"
    if end:
        return f"截至 {end}"
    return "全部记录"


def qr_svg(data: str) -> str:
    """An inline SVG QR code (error correction level M) of `data`."""
    out = io.BytesIO()
    segno.make(data, error="m", micro=False).save(
        out, kind="svg", scale=3, border=4, xmldecl=False, svgclass="qr", title="核验二维码"
    )
    return out.getvalue().decode()


STYLE = """
@page { size: A4; margin: 18mm 16mm; }
body { font-family: "SimSun", "Songti SC", "Noto Serif CJK SC", serif; color: #000;
       max-width: 180mm; margin: 0 auto; font-size: 11pt; line-height: 1.6; }
h1 { text-align: center; font-size: 20pt; letter-spacing: 0.3em; margin: 0.5em 0; }
.number { text-align: right; }
table { border-collapse: collapse; width: 100%; margin: 0.8em 0; }
th, td { border: 1px solid #000; padding: 2px 4px; text-align: center; font-size: 10pt; }
td.text { text-align: left; }
.totals td { font-weight: bold; }
.footer { display: flex; justify-content: space-between; align-items: flex-end; margin-top: 1.5em; }
.verify { text-align: center; font-size: 8pt; word-break: break-all; max-width: 60mm; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 0.5em; margin: 0; }
dt { font-weight: bold; } dd { margin: 0; }
"""


def render_html(document: Mapping[str, Any], timezone: str) -> str:
    """The printable proof (Chinese, A4): every value escaped, no external asset, and a QR
    code of the verify URL with the URL printed under it."""
    volunteer, issuer, total = document["volunteer"], document["issuer"], document["totals"]
    name = volunteer["name"] if volunteer["name"] is not None else "（个人信息已删除）"
    several = issuer["kind"] == "book"
    issued = datetime.fromtimestamp(document["iat"], UTC).astimezone(ZoneInfo(timezone)).date()
    rows = []
    for i, record in enumerate(document["records"], 1):
        org_cell = f'<td class="text">{_e(record["organisation_name"])}</td>' if several else ""
        rows.append(
            "<tr>"
            f"<td>{i}</td><td>{_e(record['service_day'])}</td>"
            f'<td class="text">{_e(record["project_title"])}</td>'
            f"<td>{_e(record['category_name'])}</td>{org_cell}"
            f"<td>{_e(hours(record['minutes']))}</td>"
            f"<td>{_e(EVIDENCE_ZH.get(record['evidence'], record['evidence']))}</td>"
            f"<td>{_e(record['attested_by'] or '—')}</td>"
            "</tr>"
        )
    if not rows:
        rows.append(f'<tr><td colspan="{8 if several else 7}">该期间无已认证的服务记录</td></tr>')
    org_head = "<th>服务单位</th>" if several else ""
    span = 5 if several else 4
    split = (
        f"信用时 {_e(hours(total['checkin_minutes']))} 小时；"
        f"荣誉时 {_e(hours(total['manual_minutes']))} 小时"
    )
    summary = (
        f"兹证明上述志愿者参加志愿服务，经{_e(issuer['name'])}核实，已认证服务记录 "
        f"{_e(total['records'])} 条，累计服务时长 {_e(total['hours'])} 小时，其中{split}。"
        "明细如下："
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>志愿服务记录证明 {_e(document["number"])}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>志愿服务记录证明</h1>
<p class="number">证明编号：{_e(document["number"])}</p>
<dl>
<dt>志愿者姓名</dt><dd>{_e(name)}</dd>
<dt>志愿者编号</dt><dd>{_e(volunteer["volunteer_number"])}</dd>
<dt>证明期间</dt><dd>{_e(_period_zh(document["period"]))}</dd>
</dl>
<p>{summary}</p>
<table>
<thead><tr><th>序号</th><th>日期</th><th>项目</th><th>类别</th>{org_head}<th>时长(小时)</th>
<th>证据（信用时/荣誉时）</th><th>证明人</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
<tfoot class="totals">
<tr><td colspan="{span}">合计</td><td>{_e(total["hours"])}</td>
<td colspan="2" class="text">{split}</td></tr>
</tfoot>
</table>
<p>信用时：志愿者在服务现场签到、签退记录的时长；荣誉时：由服务单位录入、经证明人证明的时长。</p>
<div class="footer">
<dl>
<dt>出具单位</dt><dd>{_e(issuer["name"])}（盖章）</dd>
<dt>负责人</dt><dd>{_e(document["person_in_charge"] or "—")}</dd>
<dt>经办人</dt><dd>{_e(document["handler"])}</dd>
<dt>出具日期</dt><dd>{_e(_zh_date(issued))}</dd>
</dl>
<div class="verify">
{qr_svg(document["verify_url"])}
<div>扫码或访问以下地址核验本证明：</div>
<div>{_e(document["verify_url"])}</div>
</div>
</div>
</body>
</html>
"""


def render_check_html(stored: StoredProof, timezone: str) -> str:
    """The page a browser gets at a proof's check link (Chinese): whether its signature
    verifies now, and whose certified hours over which period it states."""
    document = stored.document
    volunteer, issuer, total = document["volunteer"], document["issuer"], document["totals"]
    name = volunteer["name"] if volunteer["name"] is not None else "（个人信息已删除）"
    issued = datetime.fromtimestamp(document["iat"], UTC).astimezone(ZoneInfo(timezone)).date()
    changes = ""
    checked = _local_time(stored.checked_at, timezone)
    if stored.signature_valid and stored.records_stand:
        verdict = '<p class="valid">✓ 核验通过：本证明由服务出具，签名有效，内容未被改动。</p>'
    elif stored.signature_valid:
        standing = stored.standing_totals
        verdict = (
            '<p class="changed">⚠ 签名有效，但本证明出具后，所列记录中有 '
            f"{_e(len(stored.changed_records))} 条已被冲正或更正，不再成立。"
            f"现仍成立的记录 {_e(standing['records'])} 条，"
            f"共 {_e(standing['hours'])} 小时。</p>"
        )
        lines = "".join(
            f"<tr><td>{_e(c['record_id'])}</td>"
            f"<td>{_e(CHANGE_ZH.get(c['change'] or '', '状态未知'))}</td>"
            f"<td>{_e(_local_time(c['at'], timezone))}</td>"
            f"<td>{_e(hours(c['minutes']) if isinstance(c['minutes'], int) else '—')}</td></tr>"
            for c in stored.changed_records
        )
        changes = (
            "<table><thead><tr><th>记录编号</th><th>变更</th><th>变更时间</th>"
            f"<th>时长(小时)</th></tr></thead><tbody>{lines}</tbody></table>"
        )
    else:
        verdict = (
            '<p class="invalid">✗ 核验未通过：本证明的签名无法验证，内容不可采信。'
            "请向出具单位核实。</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>志愿服务记录证明核验 {_e(document["number"])}</title>
<style>{STYLE}{CHECK_STYLE}</style>
</head>
<body>
<h1>志愿服务记录证明核验</h1>
{verdict}
<dl>
<dt>证明编号</dt><dd>{_e(document["number"])}</dd>
<dt>志愿者姓名</dt><dd>{_e(name)}</dd>
<dt>志愿者编号</dt><dd>{_e(volunteer["volunteer_number"])}</dd>
<dt>证明期间</dt><dd>{_e(_period_zh(document["period"]))}</dd>
<dt>已认证记录</dt><dd>{_e(total["records"])} 条</dd>
<dt>累计服务时长</dt><dd>{_e(total["hours"])} 小时</dd>
<dt>出具单位</dt><dd>{_e(issuer["name"])}</dd>
<dt>出具日期</dt><dd>{_e(_zh_date(issued))}</dd>
</dl>
{changes}
<p>本页所示为证明出具时的内容；记录是否仍然成立以核验时（{_e(checked)}）为准。
机器核验请以 JSON 读取本地址（<code>?format=json</code>），
签名公钥见 {_e(stored.jwks_uri)}。</p>
</body>
</html>
"""


CHANGE_ZH = {"reversed": "已冲正", "corrected": "已更正（时长已使用或失效）"}


def _local_time(instant: str | None, timezone: str) -> str:
    if not instant:
        return "—"
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


CHECK_STYLE = """
.valid { color: #1a7f37; font-weight: bold; }
.changed { color: #9a6700; font-weight: bold; }
.invalid { color: #cf222e; font-weight: bold; }
"""
