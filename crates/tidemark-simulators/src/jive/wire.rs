//! Jive's wire format: the JSON prefix, dates, filter/sort/paging parameters, the list envelope
//! with its links, content and deletedObject entities, and the error body.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::store::{ContentRecord, DeletedRecord};
use super::Person;

/// What real Jive puts before every JSON body, so that a browser cannot execute it as script.
pub const PREFIX: &str = "throw 'allowIllegalResourceCall is false.';\n";

/// The path every v3 endpoint lives under.
pub const API_PREFIX: &str = "/api/core/v3";

/// The ceiling real Jive puts on `count`.
pub const DEFAULT_MAX_COUNT: usize = 100;

/// `count` when the request has none.
pub const DEFAULT_COUNT: usize = 25;

/// Content types and their Jive `typeCode`s.
const TYPE_CODES: &[(&str, i64)] = &[
    ("discussion", 1),
    ("message", 2),
    ("file", 13),
    ("poll", 18),
    ("post", 38),
    ("document", 102),
    ("video", 1100),
    ("idea", 3_227_383),
    ("update", 1_464_927_464),
];

/// `2015-05-06T23:16:30.594+0000`: millisecond precision, numeric UTC offset without colon.
pub fn format_date(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Parses a date as Jive accepts it in filters: ISO 8601 with a numeric offset (`+0000`,
/// `+00:00`) or `Z`, with or without fractional seconds.
///
/// # Errors
/// A message naming the bad value. A space where the offset's `+` should be gets its own
/// hint: an unencoded `+` in a query string decodes to a space, so it must be sent as `%2B`.
pub fn parse_date(raw: &str) -> Result<DateTime<Utc>, String> {
    let text = raw.trim();
    if text.contains(' ') {
        return Err(format!(
            "Invalid date '{raw}': a '+' in a query string must be sent as %2B (an unencoded '+' reads as a space)"
        ));
    }
    let normalized = match text.strip_suffix(['Z', 'z']) {
        Some(head) => format!("{head}+0000"),
        None => text.to_string(),
    };
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(time) = DateTime::parse_from_str(&normalized, format) {
            return Ok(time.with_timezone(&Utc));
        }
    }
    Err(format!(
        "Invalid date '{raw}': expected ISO 8601 such as 2015-05-06T23:16:30.594+0000"
    ))
}

/// One `filter=name(arg,arg,...)` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub args: Vec<String>,
}

/// Parses `name(arg,...)`.
pub fn parse_filter(raw: &str) -> Result<Filter, String> {
    let text = raw.trim();
    let (Some(open), true) = (text.find('('), text.ends_with(')')) else {
        return Err(format!(
            "Invalid filter '{raw}': expected name(value,...) such as updated(2015-05-06T23:16:30.594+0000)"
        ));
    };
    let name = text[..open].trim();
    let inner = &text[open + 1..text.len() - 1];
    if name.is_empty() {
        return Err(format!("Invalid filter '{raw}': missing filter name"));
    }
    let args: Vec<String> = inner.split(',').map(|arg| arg.trim().to_string()).collect();
    if args.iter().any(String::is_empty) {
        return Err(format!("Invalid filter '{raw}': empty value"));
    }
    Ok(Filter {
        name: name.to_string(),
        args,
    })
}

/// An inclusive date range; `until` is open when the filter had one date.
#[derive(Debug, Clone, Copy)]
pub struct DateRange {
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl DateRange {
    /// One date: on or after it. Two dates, in either order: between them, both ends included.
    fn parse(filter: &Filter, raw: &str) -> Result<DateRange, String> {
        let dates = filter
            .args
            .iter()
            .map(|arg| parse_date(arg))
            .collect::<Result<Vec<_>, _>>()?;
        match dates.as_slice() {
            [from] => Ok(DateRange {
                from: *from,
                until: None,
            }),
            [first, second] => Ok(DateRange {
                from: *first.min(second),
                until: Some(*first.max(second)),
            }),
            _ => Err(format!(
                "Invalid filter '{raw}': {} takes one or two dates",
                filter.name
            )),
        }
    }

    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        time >= self.from && self.until.is_none_or(|until| time <= until)
    }
}

/// Sort orders of `GET /contents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSort {
    DateCreatedAsc,
    DateCreatedDesc,
    LatestActivityAsc,
    LatestActivityDesc,
    TitleAsc,
}

impl ContentSort {
    fn parse(raw: &str) -> Result<ContentSort, String> {
        match raw {
            "dateCreatedAsc" => Ok(ContentSort::DateCreatedAsc),
            "dateCreatedDesc" => Ok(ContentSort::DateCreatedDesc),
            "latestActivityAsc" => Ok(ContentSort::LatestActivityAsc),
            "latestActivityDesc" => Ok(ContentSort::LatestActivityDesc),
            "titleAsc" => Ok(ContentSort::TitleAsc),
            _ => Err(format!(
                "Invalid sort '{raw}': expected one of dateCreatedAsc, dateCreatedDesc, latestActivityAsc, latestActivityDesc, titleAsc"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContentSort::DateCreatedAsc => "dateCreatedAsc",
            ContentSort::DateCreatedDesc => "dateCreatedDesc",
            ContentSort::LatestActivityAsc => "latestActivityAsc",
            ContentSort::LatestActivityDesc => "latestActivityDesc",
            ContentSort::TitleAsc => "titleAsc",
        }
    }
}

/// Sort orders of `GET /deletedObjects/contents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedSort {
    EventDateAsc,
    EventDateDesc,
}

impl DeletedSort {
    fn parse(raw: &str) -> Result<DeletedSort, String> {
        match raw {
            "eventDateAsc" => Ok(DeletedSort::EventDateAsc),
            "eventDateDesc" => Ok(DeletedSort::EventDateDesc),
            _ => Err(format!(
                "Invalid sort '{raw}': expected eventDateAsc or eventDateDesc"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeletedSort::EventDateAsc => "eventDateAsc",
            DeletedSort::EventDateDesc => "eventDateDesc",
        }
    }
}

/// `startIndex` and the effective `count` (already capped at the server's maximum).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub start_index: usize,
    pub count: usize,
}

/// The parameters every list endpoint shares, plus what links must repeat.
#[derive(Debug, Clone)]
pub struct Common {
    pub page: Page,
    pub filters_raw: Vec<String>,
    pub fields: Option<String>,
}

/// The parsed query of `GET /contents`.
#[derive(Debug, Clone)]
pub struct ContentsQuery {
    pub updated: Vec<DateRange>,
    pub types: Vec<Vec<String>>,
    pub sort: ContentSort,
    pub common: Common,
}

impl ContentsQuery {
    pub fn parse(pairs: &[(String, String)], max_count: usize) -> Result<ContentsQuery, String> {
        let (common, sort, filters) = parse_list_params(pairs, max_count)?;
        let sort = sort.map_or(Ok(ContentSort::DateCreatedDesc), ContentSort::parse)?;
        let mut query = ContentsQuery {
            updated: Vec::new(),
            types: Vec::new(),
            sort,
            common,
        };
        for (raw, filter) in filters {
            match filter.name.as_str() {
                "updated" | "modificationDate" => {
                    query.updated.push(DateRange::parse(&filter, &raw)?);
                }
                "type" => query.types.push(filter.args),
                other => {
                    return Err(format!(
                        "Invalid filter '{raw}': unsupported filter '{other}' (this endpoint takes updated, modificationDate, type)"
                    ))
                }
            }
        }
        Ok(query)
    }

    pub fn matches(&self, record: &ContentRecord, updated: DateTime<Utc>) -> bool {
        self.updated.iter().all(|range| range.contains(updated))
            && self
                .types
                .iter()
                .all(|types| types.contains(&record.content_type))
    }
}

/// The parsed query of `GET /deletedObjects/contents`.
#[derive(Debug, Clone)]
pub struct DeletedQuery {
    pub since: Vec<DateTime<Utc>>,
    pub types: Vec<Vec<String>>,
    pub sort: DeletedSort,
    pub common: Common,
}

impl DeletedQuery {
    pub fn parse(pairs: &[(String, String)], max_count: usize) -> Result<DeletedQuery, String> {
        let (common, sort, filters) = parse_list_params(pairs, max_count)?;
        let sort = sort.map_or(Ok(DeletedSort::EventDateDesc), DeletedSort::parse)?;
        let mut query = DeletedQuery {
            since: Vec::new(),
            types: Vec::new(),
            sort,
            common,
        };
        for (raw, filter) in filters {
            match filter.name.as_str() {
                "since" => match filter.args.as_slice() {
                    [date] => query.since.push(parse_date(date)?),
                    _ => return Err(format!("Invalid filter '{raw}': since takes one date")),
                },
                "type" => query.types.push(filter.args),
                other => {
                    return Err(format!(
                        "Invalid filter '{raw}': unsupported filter '{other}' (this endpoint takes since, type)"
                    ))
                }
            }
        }
        Ok(query)
    }

    pub fn matches(&self, record: &DeletedRecord) -> bool {
        self.since.iter().all(|since| record.event_date >= *since)
            && self
                .types
                .iter()
                .all(|types| types.contains(&record.object_type))
    }
}

type ListParams<'a> = (Common, Option<&'a str>, Vec<(String, Filter)>);

fn parse_list_params(
    pairs: &[(String, String)],
    max_count: usize,
) -> Result<ListParams<'_>, String> {
    let mut start_index = 0;
    let mut count = DEFAULT_COUNT;
    let mut sort = None;
    let mut fields = None;
    let mut filters = Vec::new();
    let mut filters_raw = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "filter" => {
                filters.push((value.clone(), parse_filter(value)?));
                filters_raw.push(value.clone());
            }
            "sort" => sort = Some(value.as_str()),
            "fields" => fields = Some(value.clone()),
            "startIndex" => {
                start_index = value.trim().parse::<usize>().map_err(|_| {
                    format!("Invalid startIndex '{value}': must be a non-negative integer")
                })?;
            }
            "count" => {
                count = match value.trim().parse::<i64>() {
                    Ok(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => {
                        return Err(format!(
                            "Invalid count '{value}': must be a positive integer"
                        ))
                    }
                };
            }
            // Jive ignores parameters it does not know (abridged, directive, origin, ...).
            _ => {}
        }
    }
    let common = Common {
        page: Page {
            start_index,
            count: count.min(max_count.max(1)),
        },
        filters_raw,
        fields,
    };
    Ok((common, sort, filters))
}

/// The list envelope: `itemsPerPage`, `startIndex`, `list`, and `links` with `next` when more
/// items follow and `previous` when the page does not start at 0.
pub fn list_envelope(
    items: Vec<Value>,
    common: &Common,
    sort: &str,
    more: bool,
    endpoint_url: &str,
) -> Value {
    let page = common.page;
    let link = |start_index: usize| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("sort", sort);
        if let Some(fields) = &common.fields {
            query.append_pair("fields", fields);
        }
        for filter in &common.filters_raw {
            query.append_pair("filter", filter);
        }
        query.append_pair("count", &page.count.to_string());
        query.append_pair("startIndex", &start_index.to_string());
        format!("{endpoint_url}?{}", query.finish())
    };
    let mut links = serde_json::Map::new();
    if page.start_index > 0 {
        links.insert(
            "previous".into(),
            json!(link(page.start_index.saturating_sub(page.count))),
        );
    }
    if more {
        links.insert(
            "next".into(),
            json!(link(page.start_index.saturating_add(items.len()))),
        );
    }
    let mut envelope = json!({
        "itemsPerPage": page.count,
        "startIndex": page.start_index,
        "list": items,
    });
    if !links.is_empty() {
        envelope["links"] = Value::Object(links);
    }
    envelope
}

/// The `typeCode` of a content type (0 for types the simulator does not know).
pub fn type_code(content_type: &str) -> i64 {
    TYPE_CODES
        .iter()
        .find(|(name, _)| *name == content_type)
        .map_or(0, |(_, code)| *code)
}

fn html_path(content_type: &str, id: u64) -> String {
    match content_type {
        "document" | "file" => format!("docs/DOC-{id}"),
        "discussion" => format!("thread/{id}"),
        "poll" => format!("polls/{id}"),
        "idea" => format!("ideas/{id}"),
        other => format!("{other}s/{id}"),
    }
}

/// A person as Jive embeds it in content (`author`).
pub fn person_json(origin: &str, person: &Person) -> Value {
    let api = format!("{origin}{API_PREFIX}");
    json!({
        "id": person.id,
        "displayName": person.display_name,
        "type": "person",
        "emails": [{"value": person.email, "type": "work", "primary": true, "jive_label": "Email"}],
        "resources": {
            "self": {"ref": format!("{api}/people/{}", person.id), "allowed": ["GET"]},
            "html": {"ref": format!("{origin}/people/{}", person.id), "allowed": ["GET"]},
        },
    })
}

/// A Content entity as `GET /contents` returns it, with `updated` as currently visible.
pub fn content_json(origin: &str, record: &ContentRecord, updated: DateTime<Utc>) -> Value {
    let api = format!("{origin}{API_PREFIX}");
    let id = record.id.to_string();
    let place_uri = format!("{api}/places/{}", record.place_id);
    json!({
        "id": id,
        "contentID": id,
        "type": record.content_type,
        "typeCode": type_code(&record.content_type),
        "subject": record.subject,
        "status": "published",
        "visibility": "place",
        "author": person_json(origin, &record.author),
        "parent": place_uri,
        "parentPlace": {
            "id": record.place_id.to_string(),
            "placeID": record.place_id.to_string(),
            "name": record.place_name,
            "type": "group",
            "uri": place_uri,
            "html": format!("{origin}/groups/{}", record.place_id),
        },
        "published": format_date(record.published),
        "updated": format_date(updated),
        "lastActivityDate": format_date(updated),
        "resources": {
            "self": {"ref": format!("{api}/contents/{id}"), "allowed": ["GET", "PUT", "DELETE"]},
            "html": {"ref": format!("{origin}/{}", html_path(&record.content_type, record.id)), "allowed": ["GET"]},
        },
    })
}

/// A DeletedObject entity.
pub fn deleted_json(origin: &str, record: &DeletedRecord) -> Value {
    let api = format!("{origin}{API_PREFIX}");
    json!({
        "id": record.uuid,
        "type": "deletedObject",
        "objectType": record.object_type,
        "objectId": record.object_id.to_string(),
        "eventDate": format_date(record.event_date),
        "url": format!("{api}/contents/{}", record.object_id),
        "resources": {
            "self": {"ref": format!("{api}/deletedObjects/{}", record.uuid), "allowed": ["GET"]},
        },
    })
}

/// Jive's error body.
pub fn error_json(status: u16, message: &str) -> Value {
    json!({ "error": { "status": status, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pairs(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn test_dates_round_trip_in_jive_format() {
        let time = Utc
            .timestamp_millis_opt(1_430_954_190_594)
            .single()
            .expect("valid millis");
        assert_eq!(format_date(time), "2015-05-06T23:16:30.594+0000");
        for accepted in [
            "2015-05-06T23:16:30.594+0000",
            "2015-05-06T23:16:30.594+00:00",
            "2015-05-06T23:16:30.594Z",
            "2015-05-07T01:16:30.594+0200",
        ] {
            assert_eq!(parse_date(accepted), Ok(time), "{accepted}");
        }
        assert!(parse_date("2015-05-06T23:16:30Z").is_ok());
        let unencoded_plus = parse_date("2015-05-06T23:16:30.594 0000").expect_err("space");
        assert!(unencoded_plus.contains("%2B"), "{unencoded_plus}");
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn test_range_filter_accepts_dates_in_either_order() {
        let query = ContentsQuery::parse(
            &pairs("filter=modificationDate(2015-05-07T00:00:00.000%2B0000,2015-05-06T00:00:00.000%2B0000)"),
            100,
        )
        .expect("valid query");
        let range = query.updated[0];
        assert!(range.from < range.until.expect("two dates"));
    }

    #[test]
    fn test_bad_parameters_are_named_in_the_error() {
        let cases = [
            ("filter=updated", "updated"),
            ("filter=updated(nope)", "nope"),
            ("filter=author(/people/1)", "author"),
            ("sort=newest", "newest"),
            ("count=0", "count"),
            ("count=ten", "ten"),
            ("startIndex=-1", "startIndex"),
            (
                "filter=updated(2015-05-06T00:00:00Z,2015-05-07T00:00:00Z,2015-05-08T00:00:00Z)",
                "one or two",
            ),
        ];
        for (query, named) in cases {
            let error = ContentsQuery::parse(&pairs(query), 100).expect_err(query);
            assert!(error.contains(named), "{query}: {error}");
        }
    }

    #[test]
    fn test_count_is_capped_at_the_server_maximum() {
        let query = ContentsQuery::parse(&pairs("count=500"), 100).expect("valid");
        assert_eq!(query.common.page.count, 100);
        let query = ContentsQuery::parse(&pairs(""), 7).expect("valid");
        assert_eq!(query.common.page.count, 7);
    }
}
