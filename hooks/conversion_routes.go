package hooks

import "github.com/pocketbase/pocketbase/core"

func registerConversionRoutes(app core.App, conversions *conversionService) {}
