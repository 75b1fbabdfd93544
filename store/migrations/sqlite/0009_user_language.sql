-- The language a person reads the pages in ('en', 'zh'); NULL follows the
-- browser's Accept-Language.
ALTER TABLE users ADD COLUMN language TEXT;
