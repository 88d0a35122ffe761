{{ config(severity='warn') }}
{# Rows of the stewards' seed callcenter_request_resolutions the build did not apply: a request
   number that names no request in the queue (mistyped, or a request a code, email or phone
   matched), or a resolution code that is the code of none of that request's answers (mistyped,
   or copied from another request's row of optout_request_candidates). The request stays in the
   queue; the steward copies the row again from the pick list. A request erased since (its raw
   row purged, its tombstone kept) is not reported. #}
with
resolutions as (select * from {{ ref('callcenter_request_resolutions') }}),
applied as (
    select distinct request_no from {{ ref('int_callcenter_requests_resolved') }}
    where is_resolved_by_steward
),
erased as (select distinct request_no from {{ ref('erasure_tombstones') }})
select
    resolutions.request_no,
    resolutions.resolution_code,
    resolutions.decided_by,
    resolutions.decided_on
from resolutions
left join applied on resolutions.request_no = applied.request_no
left join erased on resolutions.request_no = erased.request_no
where applied.request_no is null and erased.request_no is null
